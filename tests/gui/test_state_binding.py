"""The panels' widgets are bound to the core state objects both ways, and AppState mirrors the
Session's selection and busy state as signals (the Python API changes them in the Session)."""

from __future__ import annotations

import pytest

from paramscope.core.edit.session import Session
from paramscope.core.sources.sources import open_source
from paramscope.core.state.init_state import RULE
from paramscope.gui.panels.backward_panel import BackwardPanel
from paramscope.gui.panels.init_panel import InitPanel
from paramscope.gui.state import AppState


@pytest.fixture
def init_panel(qtbot) -> InitPanel:
    state = AppState()
    assert state.open("demo:mlp")
    panel = InitPanel(state)
    qtbot.addWidget(panel)
    return panel


def test_setting_the_init_state_shows_in_the_widgets(init_panel):
    panel, request = init_panel, init_panel.init_state
    request.initializer = "constant_"
    assert panel.initializer_combo.currentData() == "constant_" and list(panel.fields) == ["val"]
    request.set_param("val", 2.5)
    assert panel.fields["val"].value() == 2.5
    request.set_param("val", 1e-9)  # the spin box shows 6 decimals: what is applied is what is shown
    assert panel.fields["val"].value() == 0.0 and request.params == {"val": 0.0}
    request.target_mode, request.rule_text = RULE, "2.*"
    assert panel.rule_edit.isEnabled() and panel.rule_edit.text() == "2.*"
    assert [panel.targets_list.item(i).text() for i in range(panel.targets_list.count())] == ["2.weight", "2.bias"]
    request.seed_text, request.skip_refused = "11", True
    assert panel.seed_edit.text() == "11" and panel.skip_refused.isChecked()
    panel.edit_state.kind = "clamp"
    assert panel.edit_kind.currentText() == "clamp" and panel.clamp_low.isEnabled() and not panel.edit_value.isEnabled()


def test_editing_the_widgets_sets_the_init_state(init_panel):
    panel, request = init_panel, init_panel.init_state
    panel.initializer_combo.setCurrentIndex(panel.initializer_combo.findData("uniform_"))
    assert request.initializer == "uniform_" and request.params == {"a": 0.0, "b": 1.0}
    panel.fields["b"].setValue(0.25)
    assert request.kwargs() == {"a": 0.0, "b": 0.25}
    panel.weights_box.setChecked(False)
    panel.custom_function.setText("mine")
    assert not request.weights and request.custom_function == "mine"
    panel.expression_edit.setText("x + 1")
    assert panel.edit_state.expression == "x + 1"


def test_backward_form_and_state_are_bound(qtbot):
    state = AppState(Session(open_source("demo:mlp")))
    panel = BackwardPanel(state)
    qtbot.addWidget(panel)
    request = panel.backward_state
    assert request.input_text == panel.input_edit.text() == "rand(2, 4)"
    request.input_text, request.mode, request.loss, request.seed = "ones(3, 4)", "eval", "mean", 9
    assert panel.input_edit.text() == "ones(3, 4)" and panel.mode_combo.currentText() == "eval"
    assert panel.loss_combo.currentData() == "mean" and panel.seed_spin.value() == 9
    panel.accumulate_box.setChecked(True)
    panel.input_edit.setText("zeros(1, 4)")
    assert request.accumulate and request.request(state.session).inputs.text == "zeros(1, 4)"


def test_app_state_mirrors_the_sessions_selection_and_busy(qtbot):
    state = AppState(Session(open_source("demo:mlp")))
    session = state.session
    with qtbot.waitSignal(state.tensorSelected) as selected:
        session.select_tensor("2.weight")  # as the Python API would
    assert selected.args == ["2.weight"] and state.selected_tensor == "2.weight"
    with qtbot.waitSignal(state.moduleSelected):
        state.select_module("0")
    assert session.selected_module == "0"
    with qtbot.waitSignal(state.busyChanged) as busy:
        session.set_busy(True, "backward")
    assert busy.args == [True, "backward"] and state.model_busy == "backward"
    # A new model: work on the old one no longer uses "the model", and the window hears so.
    with qtbot.waitSignal(state.busyChanged) as ended:
        state.set_session(Session(open_source("demo:mlp")))
    assert ended.args == [False, "backward"] and state.model_busy is None and state.selected_tensor is None
    with qtbot.assertNotEmitted(state.tensorSelected), qtbot.assertNotEmitted(state.busyChanged):
        session.select_tensor("0.weight")  # the old session: not news any more
        session.set_busy(False, "backward")


def test_an_arithmetic_error_in_a_command_is_one_line_and_changes_nothing(qtbot) -> None:
    """trunc_normal_ with std=0 raised ZeroDivisionError out of the Apply button's slot: a
    traceback on the console, no word in the window."""
    import torch

    from paramscope.core.edit.commands import TensorEditCommand

    state = AppState()
    assert state.open("demo:mlp")
    weight = state.session.tensor("0.weight")
    before = weight.detach().clone()

    def mutate() -> None:
        weight.data.mul_(2.0)
        raise ZeroDivisionError("float division by zero")  # after changing a tensor

    errors: list[str] = []
    state.errorOccurred.connect(errors.append)
    assert not state.execute(TensorEditCommand("double then fail", [("0.weight", weight)], mutate))
    assert errors == ["double then fail: ZeroDivisionError: float division by zero"]
    assert torch.equal(weight.detach(), before) and not state.session.stack.can_undo
