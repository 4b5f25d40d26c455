"""``paramscope.explore(model)`` opens the window on a live model and reports what changed."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from torch import nn

import paramscope
from paramscope.core.edit.commands import TensorEditCommand
from paramscope.gui.app.main_window import MainWindow


def test_explore_edits_the_live_model_and_summarizes(qapp):
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))

    def act() -> None:
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
        assert window.state.session.model is net  # the very object, not a copy
        weight = window.state.session.tensor("0.weight")
        window.state.execute(TensorEditCommand("zero 0.weight", [("0.weight", weight)], weight.zero_))
        window.interactive = False  # no "unsaved changes" question in a test
        window.close()

    QTimer.singleShot(0, act)
    summary = paramscope.explore(net)
    assert summary == "1 change: zero 0.weight"
    assert float(net[0].weight.detach().abs().sum()) == 0.0


def test_explore_returns_at_once_under_ipython_qt_and_edits_stay_on_the_model(qtbot, monkeypatch):
    import paramscope.gui.app.explore as explore_module
    from paramscope.gui.panels.init_panel import SELECTED_MODULE

    monkeypatch.setattr(explore_module, "ipython_runs_qt", lambda: True)  # as after %gui qt
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    window = paramscope.explore(net)
    assert isinstance(window, MainWindow) and window.isVisible()  # returned, window still live
    qtbot.addWidget(window)
    area = window.screen().availableGeometry()  # fits the screen, as the paramscope command's window
    assert window.width() <= area.width() and window.height() <= area.height()
    window.interactive = False
    window.state.select_module("0")
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(SELECTED_MODULE))
    panel.set_initializer("constant_")
    panel.set_field("val", 3.0)
    assert panel.apply()
    # The caller's own object changed, while the window is open.
    assert net[0].weight.detach().eq(3).all() and net[0].bias.detach().eq(3).all()
    assert explore_module.summarize_changes(window).startswith("1 change")
    window.close()


def test_ipython_detection_is_false_in_a_plain_process():
    from paramscope.gui.app.explore import ipython_runs_qt

    assert ipython_runs_qt() is False


def test_ipython_detection_reads_the_shells_event_loop(monkeypatch):
    import sys
    import types

    from paramscope.gui.app.explore import ipython_runs_qt

    shell = types.SimpleNamespace(active_eventloop=None)
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert ipython_runs_qt() is False  # IPython without %gui qt: explore() blocks
    shell.active_eventloop = "qt6"  # after %gui qt
    assert ipython_runs_qt() is True
    shell.active_eventloop = None
    shell.kernel = types.SimpleNamespace(eventloop=types.SimpleNamespace(__name__="loop_qt"))  # Jupyter kernel
    assert ipython_runs_qt() is True
