"""Fixtures for GUI tests: a main window on a demo, with statistics done."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QCoreApplication, QSettings, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QWidget

from paramscope.gui.app.main_window import MainWindow
from paramscope.gui.app.settings import settings_of_its_own, use_settings_file


@pytest.fixture(autouse=True)
def _qt_application(qapp):
    """Every GUI test has a QApplication (models paint icons and measure fonts), and settings of
    its own: a window saves its layout and recent files, which must reach neither the next test
    nor the settings of whoever runs the suite."""
    with settings_of_its_own():
        yield qapp
    if QGuiApplication.keyboardModifiers() != Qt.KeyboardModifier.NoModifier:
        # qtbot.keySequence leaves Qt's modifier state at Ctrl: the next test's selectRow then
        # toggled instead of selecting (test_main_window failed after test_conventions)
        QTest.keyRelease(QWidget(), Qt.Key.Key_Control)


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


@pytest.fixture
def settings_file(tmp_path):
    """Every QSettings() in the test reads and writes an INI file under tmp_path."""
    old_format = QSettings.defaultFormat()
    old_org, old_app = QCoreApplication.organizationName(), QCoreApplication.applicationName()
    QCoreApplication.setOrganizationName("paramscope-test")
    QCoreApplication.setApplicationName("paramscope-test")
    use_settings_file(tmp_path)
    yield tmp_path
    QSettings.setDefaultFormat(old_format)
    QCoreApplication.setOrganizationName(old_org)
    QCoreApplication.setApplicationName(old_app)


@pytest.fixture
def many_tensors_state(tmp_path):
    """many_tensors_state(300): an AppState on a .safetensors of that many tiny tensors, named as
    bench many_tensors writes them (``blocks.{i}.layers.{j}.weight``, (3, 2) and (2,) alternating)."""
    from safetensors.torch import save_file

    from paramscope.cli.bench_many import many_tensors
    from paramscope.gui.state import AppState

    def _open(count: int) -> AppState:
        path = tmp_path / "many.safetensors"
        save_file(many_tensors(count), str(path))
        state = AppState()
        assert state.open(str(path))
        return state

    return _open
