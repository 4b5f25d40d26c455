"""Fixtures for GUI tests: a main window on a demo, with statistics done."""

from __future__ import annotations

import pytest

from paramscope.gui.main_window import MainWindow


@pytest.fixture(autouse=True)
def _qt_application(qapp):
    """Every GUI test has a QApplication (models paint icons and measure fonts)."""
    return qapp


@pytest.fixture
def window(qtbot):
    """A non-interactive main window (errors are signals, not modal boxes)."""
    win = MainWindow(interactive=False)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.statistics.cancel_and_wait()


@pytest.fixture
def open_demo(window, qtbot):
    """open_demo("mlp") opens demo:mlp and waits until every tensor has statistics."""

    def _open(name: str) -> MainWindow:
        with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
            assert window.open_source(f"demo:{name}")
        return window

    return _open
