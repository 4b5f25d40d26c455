"""Notice when the opened checkpoint changes on disk (a training job saving over it).

The model's values were read into memory when it was opened (or are read with a check, for a
lazily opened file), so nothing breaks; the user is told in one line and offered to reopen.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from paramscope.core.files.regions import FileStamp

# A save writes in pieces: wait until the file has been quiet this long before saying so.
SETTLE_MS = 500


class FileWatch(QObject):
    """Watches one opened file; ``changed(path)`` once per change, after it settles."""

    changed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._watcher = QFileSystemWatcher(self)
        self._watcher.fileChanged.connect(self._on_event)
        self._stamp: FileStamp | None = None
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(self._check)

    def watch(self, path: Path | None) -> None:
        """Watch ``path`` from now on (None or a folder: watch nothing)."""
        if self._watcher.files():
            self._watcher.removePaths(self._watcher.files())
        self._settle.stop()
        self._stamp = None
        if path is None or not Path(path).is_file():
            return
        try:
            self._stamp = FileStamp.of(Path(path))
        except OSError:
            return
        self._watcher.addPath(str(path))

    @property
    def path(self) -> Path | None:
        return self._stamp.path if self._stamp is not None else None

    def _on_event(self, _path: str) -> None:
        self._settle.start()  # restarted by every event: report once the writes stop

    def _check(self) -> None:
        if self._stamp is None or not self._stamp.changed():
            return
        path = self._stamp.path
        # a save by rename replaces the file: watch the new one (from its current version)
        self.watch(path if path.is_file() else None)
        self.changed.emit(str(path))
