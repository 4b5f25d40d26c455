"""The backward panel driven like a user: type an input, Run backward, read the numbers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from small_models import FailsInBackward
from torch import nn

from paramscope.core.edit.session import Session
from paramscope.core.sources.sources import OpenedModel, open_source
from paramscope.gui.panels.backward_panel import COLUMNS, BackwardPanel
from paramscope.gui.state import AppState


def make_panel(qtbot, source: str = "demo:mlp") -> tuple[BackwardPanel, AppState]:
    state = AppState(Session(open_source(source)))
    panel = BackwardPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    return panel, state


def run_and_wait(qtbot, panel: BackwardPanel, state: AppState):
    with qtbot.waitSignals([panel.finished, state.gradientsChanged], timeout=60_000):
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running)
    return panel.result


def texts(panel: BackwardPanel) -> list[list[str]]:
    model = panel.table_model
    return [[model.text(r, c) for c in range(len(COLUMNS))] for r in range(model.rowCount())]


def test_tutorial_shared_layer_shows_9_and_6_equal_3_plus_3(qtbot):
    panel, state = make_panel(qtbot, "demo:shared")
    nn.init.constant_(state.session.model[0].weight, 3.0)
    assert texts(panel)[0][:3] == ["0.weight", "", "None"]  # None before any backward
    panel.input_edit.setText("ones(1, 1)")
    assert panel.loss_combo.currentData() == "sum"
    result = run_and_wait(qtbot, panel, state)
    assert result.output.value == 9.0
    assert "Output: 9" in panel.output_label.text() and "Loss (sum): 9" in panel.output_label.text()
    rows = texts(panel)
    assert [r[0] for r in rows] == ["0.weight", "    ↳ use in 0", "    ↳ use in 1"]
    assert [r[2] for r in rows] == ["6", "3", "3"]
    assert panel.parts_text("0.weight") == "6 = 3 + 3"
    panel.table.selectRow(0)
    assert (
        "tensor([[6.]])" in panel.values.toPlainText() and "6 = 3 + 3" in panel.values.toPlainText()
    )
    assert state.selected_tensor == "0.weight"


def test_default_input_runs_off_the_gui_thread_and_accumulate_doubles(qtbot):
    panel, state = make_panel(qtbot)
    assert panel.input_edit.text() == "rand(2, 4)"
    threads: list[int] = []
    model = state.session.model
    model[0].register_forward_pre_hook(lambda m, a: threads.append(threading.get_ident()))
    run_and_wait(qtbot, panel, state)
    assert threads and threads[0] != threading.get_ident()
    once = model[0].weight.grad.clone()
    panel.accumulate_box.setChecked(True)
    run_and_wait(qtbot, panel, state)
    assert torch.equal(model[0].weight.grad, 2 * once)
    assert "accumulated" in panel.status.text()

    with qtbot.waitSignal(state.gradientsChanged, timeout=5_000):
        qtbot.mouseClick(panel.zero_button, Qt.MouseButton.LeftButton)
    assert all(p.grad is None for p in model.parameters())
    assert {r[2] for r in texts(panel)} == {"None"}


def test_signal_plot_and_diagnostics_after_a_run(qtbot):
    panel, state = make_panel(qtbot, "demo:deep_mlp")
    run_and_wait(qtbot, panel, state)
    x, activations, gradients = panel.signal_plot.curves()
    assert len(x) == 39 and np.isfinite(activations).all()
    assert np.isfinite(gradients[:-1]).all()  # the last output's gradient (all ones) has std 0
    panel.signal_plot.only_parametrized.setChecked(True)
    assert len(panel.signal_plot.curves()[0]) == 20
    kinds = {
        panel.diagnostics.topLevelItem(i).text(1).split(":")[0]
        for i in range(panel.diagnostics.topLevelItemCount())
    }
    assert kinds  # 2 samples leave some ReLU units silent: dead rows are listed


def test_a_failing_forward_is_shown_and_changes_nothing(qtbot):
    panel, state = make_panel(qtbot)
    model = state.session.model
    before = [p.detach().clone() for p in model.parameters()]
    errors: list[str] = []
    state.errorOccurred.connect(errors.append)
    panel.input_edit.setText("rand(2, 5)")
    with qtbot.waitSignal(panel.failed, timeout=60_000) as blocker:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert "forward failed in 0 (Linear)" in blocker.args[0]
    assert errors == [blocker.args[0]]
    assert "mat1 and mat2" in panel.status.text()
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, model.parameters(), strict=True))
    qtbot.waitUntil(lambda: panel.run_button.isEnabled())


def test_a_bad_spec_is_refused_before_running(qtbot):
    panel, state = make_panel(qtbot)
    with qtbot.waitSignal(panel.failed, timeout=5_000) as blocker:
        panel.input_edit.setText("rand(2, x)")
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert "a size must be an integer" in blocker.args[0]
    assert not panel.is_running


def test_source_without_forward_says_why(qtbot):
    opened = OpenedModel(
        nn.Linear(2, 2),
        "w.safetensors",
        "state_dict",
        forward_unavailable="a state_dict holds no code",
    )
    state = AppState(Session(opened))
    panel = BackwardPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.unavailable.isVisible()
    assert panel.unavailable.text() == "backward unavailable: a state_dict holds no code"
    assert not panel.run_button.isEnabled()


def test_new_session_resets_the_input_and_lazy_model_rebuilds(qtbot):
    panel, state = make_panel(qtbot, "demo:tiny_lm")
    assert panel.input_edit.text() == "randint(2, 8, high=100)"
    state.open("demo:lazy")
    assert panel.input_edit.text() == "rand(2, 4)" and "guess" in panel.input_note.text()
    assert state.session.report.parameters["0.weight"].shape is None
    run_and_wait(qtbot, panel, state)
    assert state.session.report.parameters["0.weight"].shape == (8, 4)
    assert texts(panel)[0][1] == "[8, 4]"


@pytest.mark.parametrize("loss", ["mean", "l2", "cross_entropy"])
def test_losses_from_the_combo(qtbot, loss):
    panel, state = make_panel(qtbot, "demo:cnn")
    panel.loss_combo.setCurrentIndex(panel.loss_combo.findData(loss))
    result = run_and_wait(qtbot, panel, state)
    assert result.loss_name == loss
    assert "tuple, list, dict or dataclass" in panel.loss_note.text()


def test_inputs_given_to_explore_are_used(qtbot):
    linear = nn.Linear(1, 1, bias=False)
    net = nn.Sequential(linear, linear)
    nn.init.constant_(linear.weight, 3.0)
    opened = OpenedModel(net, "live model", "live")
    opened.extras["inputs"] = torch.ones(1, 1)
    state = AppState(Session(opened))
    panel = BackwardPanel(state)
    qtbot.addWidget(panel)
    assert panel.input_edit.text() == "inputs given to explore()"
    result = run_and_wait(qtbot, panel, state)
    assert result.output.value == 9.0 and linear.weight.grad.item() == 6.0


class BreaksOnDemand(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.fail = False

    def forward(self, x):
        y = self.fc(x)
        return FailsInBackward.apply(y) if self.fail else y


def test_a_backward_that_raises_shows_the_cleared_gradients(qtbot):
    model = BreaksOnDemand()
    state = AppState(Session(OpenedModel(model, "live model", "live")))
    panel = BackwardPanel(state)
    qtbot.addWidget(panel)
    panel.show()
    run_and_wait(qtbot, panel, state)
    assert texts(panel)[0][2] != "None"
    model.fail = True
    messages: list[str] = []
    panel.failed.connect(messages.append)
    with qtbot.waitSignals([panel.failed, state.gradientsChanged], timeout=60_000):
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running)
    assert all(p.grad is None for p in model.parameters())  # replacing: as zero_grad leaves it
    assert {r[2] for r in texts(panel)} == {"None"} and panel.result is None
    assert "simulated failure in backward" in panel.status.text()
    assert messages[0].endswith(".grad cleared (as zero_grad leaves them)")


def test_rows_before_a_run_show_gradients_set_outside_the_panel(qtbot):
    """The plain rows read ``.grad`` when shown (explore() leaves the model to the user's code,
    which may run backward meanwhile), not a list made once over every parameter."""
    panel, state = make_panel(qtbot)
    assert [row[2] for row in texts(panel)] == ["None"] * 4
    model = state.session.model
    model[2].bias.requires_grad_(False)
    model(torch.rand(3, 4)).sum().backward()
    assert [row[2] for row in texts(panel)] == ["(not from this panel)"] * 3 + ["None"]


def test_parameter_names_are_readable_in_a_dock_wide_panel(qtbot):
    """In the dock (~360 px) the stretched Parameter column shrank to its minimum and every name
    of a real model read "model...eight"."""
    inner = nn.Sequential()
    inner.add_module("q_proj", nn.Linear(2, 2))
    block = nn.Sequential()
    block.add_module("self_attn", inner)
    model = nn.Sequential()
    model.add_module("layers", nn.Sequential(block))
    state = AppState(Session(OpenedModel(model, "demo", "demo")))
    panel = BackwardPanel(state)
    qtbot.addWidget(panel)
    panel.resize(360, 700)
    panel.show()
    metrics = panel.table.fontMetrics()
    longest = metrics.horizontalAdvance("layers.0.self_attn.q_proj.weight")
    assert panel.table.columnWidth(0) > longest  # before a run (.grad None) ...
    panel.input_edit.setText("rand(1, 2)")
    run_and_wait(qtbot, panel, state)
    assert panel.table.columnWidth(0) > longest  # ... and after it


def test_a_backward_that_fails_after_the_forward_shaped_lazy_parameters_rebuilds(qtbot):
    """An integer input shapes the lazy layers (the forward's first step) and then fails in
    their matmul: the parameters had shapes and values while the tree, table and report still
    said "uninitialized", and edits went to tensors the report did not describe (found by the
    monkey test)."""
    panel, state = make_panel(qtbot, "demo:lazy")
    assert state.session.report.parameters["0.weight"].shape is None
    panel.input_edit.setText("randint(2, 4, high=10)")
    with qtbot.waitSignal(panel.failed, timeout=60_000) as failed:
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.is_running)
    assert "\n" not in failed.args[0]
    model = state.session.model
    shaped = {n: tuple(p.shape) for n, p in model.named_parameters() if not isinstance(p, nn.parameter.UninitializedParameter)}
    assert shaped  # (the forward shaped some: else this test tests nothing)
    report = state.session.report.parameters
    assert {n: report[n].shape for n in shaped} == shaped
