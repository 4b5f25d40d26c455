"""Large edits in the Initialize panel are computed in a worker; the window never waits for them.

While the worker runs the model is busy: edits, previews, undo and backward are refused with a
message. The result is the synchronous one, bit for bit, and undoes like any edit.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from paramscope.core.edit.commands import TensorEditCommand
from paramscope.core.edit.session import Session
from paramscope.core.edit.value_edits import value_edit_command
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rules import build_commands
from paramscope.core.init.selectors import Selector
from paramscope.core.sources.sources import OpenedModel
from paramscope.gui.panels.init_panel import BACKGROUND_NUMEL, RULE, InitPanel
from paramscope.gui.state import AppState


def _large() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2048, 4096))  # 8.4M weights: above BACKGROUND_NUMEL


def _target(panel: InitPanel, rule: str) -> None:
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(RULE))
    panel.rule_edit.setText(rule)


@pytest.fixture
def large_panel(qtbot):
    state = AppState()
    model = _large()
    reference = Session(OpenedModel(copy.deepcopy(model), "reference", "live"))
    state.open_model(OpenedModel(model, "large", "live"))
    panel = InitPanel(state)
    qtbot.addWidget(panel)
    yield panel, reference
    panel.worker.cancel_and_wait()


def test_a_large_init_runs_in_the_worker_and_equals_the_synchronous_one(large_panel, qtbot):
    panel, reference = large_panel
    state, session = panel.state, panel.state.session
    assert session.tensor("0.weight").numel() > BACKGROUND_NUMEL
    original = session.tensor("0.weight").detach().clone()
    _target(panel, "0.weight")
    panel.set_initializer("normal_")
    panel.set_field("std", 0.02)
    panel.seed_edit.setText("5")
    state.select_tensor("0.weight")

    with qtbot.waitSignal(panel.applied, timeout=120_000) as applied:
        assert panel.apply()
        # Until the worker's result is delivered (an event), the edit is pending and the model busy.
        assert panel.is_staging and state.model_busy == "init"
        assert not panel.apply_button.isEnabled()
        with qtbot.waitSignal(state.errorOccurred) as refused:
            assert not state.execute(value_edit_command(session, ["0.bias"], "add", value=1.0))
        assert "wait until the init task finishes" in refused.args[0]
        with qtbot.waitSignal(state.errorOccurred):
            assert not panel.preview()
        assert torch.equal(session.tensor("0.weight").detach(), original)  # not touched yet
        assert not session.stack.can_undo
    assert applied.args[0] == ("0.weight",)
    assert not panel.is_staging and state.model_busy is None and panel.apply_button.isEnabled()

    rule = InitRule.make(Selector.of_names(["0.weight"]), "normal_", mean=0.0, std=0.02)
    _, (expected,) = build_commands(reference, [rule], seed=5)
    reference.execute(expected)  # the synchronous path
    weight = session.tensor("0.weight")
    assert torch.equal(weight.detach(), reference.tensor("0.weight").detach())
    assert isinstance(weight, nn.Parameter) and weight.requires_grad
    # the summaries shown after were computed in the worker too
    assert (
        session.summary("0.weight") is not None and session.previous_summary("0.weight") is not None
    )
    assert "Undo takes it back" in panel.message.text()

    session.undo()
    assert torch.equal(session.tensor("0.weight").detach(), original)
    session.redo()
    assert torch.equal(session.tensor("0.weight").detach(), reference.tensor("0.weight").detach())


def test_a_large_value_edit_runs_in_the_worker(large_panel, qtbot):
    panel, reference = large_panel
    session = panel.state.session
    original = session.tensor("0.weight").detach().clone()
    _target(panel, "0.*")
    panel.edit_kind.setCurrentText("expression")
    panel.expression_edit.setText("x * 2 + 1")
    with qtbot.waitSignal(panel.applied, timeout=120_000) as applied:
        assert panel.apply_value_edit()
        assert panel.is_staging and panel.state.model_busy == "value edit"
    assert applied.args[0] == ("0.weight", "0.bias")
    reference.execute(
        value_edit_command(reference, ["0.weight", "0.bias"], "expression", expression="x * 2 + 1")
    )
    for name in ("0.weight", "0.bias"):
        assert torch.equal(session.tensor(name).detach(), reference.tensor(name).detach())
    session.undo()
    assert torch.equal(session.tensor("0.weight").detach(), original)


def test_small_edits_stay_synchronous(qtbot):
    state = AppState()
    assert state.open("demo:mlp")
    panel = InitPanel(state)
    qtbot.addWidget(panel)
    _target(panel, "*.weight")
    panel.seed_edit.setText("1")
    with qtbot.waitSignal(panel.applied, timeout=5_000):
        assert panel.apply()
        assert not panel.is_staging and not panel.worker.is_running  # already applied
    assert state.session.stack.can_undo


@pytest.mark.parametrize(("initializer", "in_worker"), [("orthogonal_", True), ("trunc_normal_", True), ("normal_", False)])
def test_an_init_goes_to_the_worker_by_its_cost_not_only_its_elements(qtbot, initializer: str, in_worker: bool):
    """Half the element limit: a normal_ edit takes ~25 ms here, but trunc_normal_ ~0.1 s and
    orthogonal_'s QR of the 1024x2048 weight held the window ~0.15 s (a 2048x2048 one 0.6 s)."""
    state = AppState()
    state.open_model(OpenedModel(nn.Sequential(nn.Linear(2048, 1024)), "half", "live"))
    assert state.session.tensor("0.weight").numel() == BACKGROUND_NUMEL // 2
    panel = InitPanel(state)
    qtbot.addWidget(panel)
    _target(panel, "0.weight")
    panel.set_initializer(initializer)
    panel.seed_edit.setText("1")
    with qtbot.waitSignal(panel.applied, timeout=60_000):
        assert panel.apply()
        assert panel.is_staging is in_worker
    assert state.session.stack.can_undo
    panel.worker.cancel_and_wait()


def test_a_failing_worker_leaves_the_model_and_says_one_line(large_panel, qtbot, monkeypatch):
    panel, _ = large_panel
    session = panel.state.session
    original = session.tensor("0.weight").detach().clone()

    def boom(self, state=None):
        raise RuntimeError("out of\nmemory")

    monkeypatch.setattr(TensorEditCommand, "stage", boom)
    _target(panel, "0.weight")
    with qtbot.waitSignal(panel.state.errorOccurred, timeout=60_000) as failed:
        assert panel.apply()
    message = failed.args[0]
    assert message.startswith("init 0.weight=normal_") and message.endswith(
        ": RuntimeError: out of memory"
    )
    assert not panel.is_staging and panel.state.model_busy is None
    assert torch.equal(session.tensor("0.weight").detach(), original) and not session.stack.can_undo


def test_opening_another_model_while_computing_drops_the_edit(large_panel, qapp):
    panel, _ = large_panel
    old = panel.state.session
    original = old.tensor("0.weight").detach().clone()
    _target(panel, "0.weight")
    assert panel.apply() and panel.is_staging
    assert panel.state.open("demo:mlp")
    assert not panel.is_staging and panel.state.model_busy is None
    assert panel.message.text() == ""  # a message about the previous model does not survive
    assert panel.worker.wait()
    qapp.processEvents()  # deliver whatever the cancelled thread still sent: it must be ignored
    assert torch.equal(old.tensor("0.weight").detach(), original) and not old.stack.can_undo
    assert not panel.state.session.stack.can_undo


def test_the_window_refuses_undo_and_backward_while_computing_and_closes(window, qtbot):
    window.open_model(OpenedModel(_large(), "large", "live"))
    state, panel = window.state, window.init_panel
    session = state.session
    small = value_edit_command(session, ["0.bias"], "set", value=0.5)
    assert state.execute(small) and not small.staged  # done at once
    weight = session.tensor("0.weight").detach().clone()
    _target(panel, "0.weight")
    assert panel.apply() and panel.is_staging
    with qtbot.waitSignal(state.errorOccurred) as refused:
        window.undo_action.trigger()
    assert refused.args[0].startswith("Undo: wait until the init task finishes")
    assert torch.equal(session.tensor("0.bias").detach(), torch.full((4096,), 0.5))
    with qtbot.waitSignal(state.errorOccurred) as refused:
        window.backward_panel.run_backward()
    assert refused.args[0].startswith("backward: wait") and not window.backward_panel.is_running
    window.close()  # waits for the worker; the edit is dropped
    assert not panel.is_staging and not panel.worker.is_running
    assert torch.equal(session.tensor("0.weight").detach(), weight)
    assert session.stack.undo_text.endswith("= 0.5")


def test_selecting_tensors_of_a_lazily_opened_model_reads_none_and_apply_reads_in_the_worker(
    qtbot, tmp_path, monkeypatch
):
    """The panel plans at every selection: that read each selected tensor of a lazily opened
    model (files over a GiB) on the GUI thread and kept it (0.9 s for a 1.85 GB embedding)."""
    from safetensors.torch import save_file

    import paramscope.gui.panels.init_work as init_work
    from paramscope.core.files import regions

    path = tmp_path / "big.safetensors"
    save_file({"0.weight": torch.ones(64, 32), "1.weight": torch.ones(8, 64)}, str(path))
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)  # as a file of many gigabytes opens
    # over 4,096 bytes to read (8,192: the embedding's 1.85 GB), not over 4,096 elements (2,048)
    monkeypatch.setattr(init_work, "BACKGROUND_NUMEL", 4096)
    state = AppState()
    assert state.open(str(path))
    panel = InitPanel(state)
    qtbot.addWidget(panel)
    for name in ("0.weight", "1.weight", "0.weight"):
        state.select_tensor(name)
        assert panel.target_names() == [name]
    session = state.session
    assert {session.tensor(n).device.type for n in ("0.weight", "1.weight")} == {"meta"}

    panel.set_initializer("constant_")
    panel.set_field("val", 3.0)
    with qtbot.waitSignal(panel.applied, timeout=60_000):
        assert panel.apply()
        assert panel.is_staging  # 8 KB still in the file: read (and the command built) in the worker
    assert torch.equal(session.tensor("0.weight").detach(), torch.full((64, 32), 3.0))
    assert session.tensor("1.weight").device.type == "meta"
    panel.worker.cancel_and_wait()
