"""What the window remembers between runs (QSettings): geometry, dock layout, recent files.

The recent-files list lives in :mod:`paramscope.gui.app.opening`; this module keeps the window's
geometry and dock state. Tests point QSettings at a temporary INI file with
:func:`use_settings_file`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow

GEOMETRY_KEY = "window/geometry"
STATE_KEY = "window/state"
WIDTH_KEY = "window/width"  # the width the dock sizes were saved at
# Bump when docks are renamed or moved, so an old saved layout is not restored onto a new one.
STATE_VERSION = 2


def use_settings_file(folder: str | Path) -> None:
    """Store every later ``QSettings()`` as an INI file under ``folder`` (tests, portable use)."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(folder))


@contextmanager
def settings_of_its_own() -> Iterator[Path]:
    """Every ``QSettings()`` in the block reads and writes an INI file in a fresh temporary folder:
    a window a benchmark or a test makes must not add its files to the user's recent files nor
    save its layout over theirs."""
    old_format = QSettings.defaultFormat()
    with tempfile.TemporaryDirectory(prefix="paramscope-settings-") as folder:
        use_settings_file(folder)
        try:
            yield Path(folder)
        finally:
            QSettings.setDefaultFormat(old_format)


def save_window(window: QMainWindow) -> None:
    settings = QSettings()
    settings.setValue(GEOMETRY_KEY, window.saveGeometry())
    settings.setValue(STATE_KEY, window.saveState(STATE_VERSION))
    settings.setValue(WIDTH_KEY, window.width())
    settings.sync()


def restore_window(window: QMainWindow) -> bool:
    """Restore geometry and dock layout saved by :func:`save_window`; False when none was saved."""
    settings = QSettings()
    geometry = settings.value(GEOMETRY_KEY)
    state = settings.value(STATE_KEY)
    restored = False
    if isinstance(geometry, QByteArray | bytes) and geometry:
        restored = window.restoreGeometry(QByteArray(geometry))
    if isinstance(state, QByteArray | bytes) and state:
        restored = window.restoreState(QByteArray(state), STATE_VERSION) or restored
    return restored


def saved_width() -> int:
    """The window's width when its layout was saved (0: not known)."""
    try:
        return int(QSettings().value(WIDTH_KEY, 0))
    except (TypeError, ValueError):
        return 0
