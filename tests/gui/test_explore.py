"""``paramscope.explore(model)`` opens the window on a live model and reports what changed."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from torch import nn

import paramscope
from paramscope.core.commands import TensorEditCommand
from paramscope.gui.main_window import MainWindow


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
