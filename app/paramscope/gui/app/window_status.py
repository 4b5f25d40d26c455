"""The main window's status bar: the selection, what is running, progress of opening and of the
statistics (each with its stop button), file changed.

:class:`WindowStatus` owns these widgets and updates them from the app state and the workers'
signals; the window keeps them under its own names (``window.running_label``, ...).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar

from paramscope.gui.state import AppState

# A progress bar repaints at most this often (each repaint of a big window costs ~25 ms).
PROGRESS_REPAINT_MS = 150
# Work shorter than this shows no bar: a demo's open or statistics flashed one in the status bar.
SHOW_AFTER_MS = 300


class ProgressPair(QObject):
    """A progress bar and its stop button for one kind of long work, shown while it runs.

    ``QProgressBar.setValue`` repaints at once (tens of ms in a big window): the bar shows the
    latest value at most every :data:`PROGRESS_REPAINT_MS`.
    """

    def __init__(self, bar: QStatusBar, text: str, button: str, tooltip: str) -> None:
        super().__init__(bar)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setFormat(f"{text} %p%")
        self.button = QPushButton(button)
        self.button.setToolTip(tooltip)
        for widget in (self.progress_bar, self.button):
            bar.addPermanentWidget(widget)
            widget.hide()
        self._pending = (0, "")
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(PROGRESS_REPAINT_MS)
        self._timer.timeout.connect(self._show)
        self._appear = QTimer(self)
        self._appear.setSingleShot(True)
        self._appear.setInterval(SHOW_AFTER_MS)
        self._appear.timeout.connect(self._appeared)

    def start(self) -> None:
        """Work began: the bar and its button appear if it lasts :data:`SHOW_AFTER_MS`."""
        self._timer.stop()
        self.progress_bar.setValue(0)
        if self.progress_bar.isHidden():
            self._appear.start()

    def _appeared(self) -> None:
        self.progress_bar.show()
        self.button.show()

    def advance(self, fraction: float, message: str) -> None:
        self._pending = (int(fraction * 100), message)
        if not self._timer.isActive():
            self._timer.start()

    def _show(self) -> None:
        percent, message = self._pending
        if percent != self.progress_bar.value():
            self.progress_bar.setValue(percent)
        self.progress_bar.setToolTip(message)

    def stop(self) -> None:
        self._timer.stop()
        self._appear.stop()
        self.progress_bar.hide()
        self.button.hide()


class WindowStatus(QObject):
    """Status-bar widgets and what they show."""

    def __init__(self, bar: QStatusBar, state: AppState) -> None:
        super().__init__(bar)
        self.state = state
        self.selection_label = QLabel()
        self.running_label = QLabel()
        self.running_label.setObjectName("runningLabel")
        self._running: dict[str, str] = {}
        self.changed_label = QLabel()
        self.changed_label.setObjectName("fileChangedLabel")
        self.reopen_button = QPushButton("Reopen")
        self.reopen_button.setToolTip("Open the new version of the file (asks about unsaved edits first)")
        bar.addWidget(self.selection_label, 1)
        bar.addPermanentWidget(self.running_label)
        self.opening = ProgressPair(bar, "opening", "Stop", "Stop opening (the model you have stays)")
        self.stats = ProgressPair(bar, "statistics", "Cancel", "Stop computing statistics (what is done stays)")
        self.progress_bar, self.cancel_button = self.stats.progress_bar, self.stats.button
        for widget in (self.changed_label, self.reopen_button):
            bar.addPermanentWidget(widget)
            widget.hide()

    def set_running(self, busy: bool, what: str, text: str | None = None) -> None:
        """Show what long work is going on (several at once are joined)."""
        if busy:
            self._running[what] = text or what
        else:
            self._running.pop(what, None)
        self.running_label.setText(("running: " + ", ".join(self._running.values())) if self._running else "")

    def stats_started(self) -> None:
        self.set_running(True, "statistics")
        self.stats.start()

    def stats_progress(self, fraction: float, message: str) -> None:
        self.stats.advance(fraction, message)

    def stats_done(self, still_running: bool) -> None:
        if not still_running:
            self.set_running(False, "statistics")
            self.stats.stop()

    def file_changed(self, path: str) -> None:
        """The opened file was saved over: the values in memory stay; offer the new version."""
        edits = " your edits are kept;" if self.state.has_session and self.state.session.modified else ""
        self.changed_label.setText(f"{Path(path).name} changed on disk since it was opened;{edits} reopen to see it")
        self.changed_label.setToolTip(path)
        self.changed_label.show()
        self.reopen_button.show()

    def new_model(self) -> None:
        self.changed_label.hide()
        self.reopen_button.hide()

    def show_selection(self) -> None:
        if not self.state.has_session:
            self.selection_label.setText("")
            return
        report = self.state.session.report
        module = self.state.selected_module
        info = report.modules.get(module)
        parts = [f"module: {module or '(model)'} ({info.type_name})" if info else ""]
        if self.state.selected_tensor:
            tensor = report.tensor(self.state.selected_tensor)
            parts.append(f"tensor: {tensor.name} {tensor.shape_text()} {tensor.dtype}")
        parts.append(f"{report.unique_params:,} parameters ({len(report.parameters):,} tensors)")
        self.selection_label.setText("   ·   ".join(p for p in parts if p))
