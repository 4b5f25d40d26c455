"""Presets in the window: picked, inspected (what they touch), edited, applied as one undoable step."""

from __future__ import annotations

import math

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from paramscope.gui.panels.preset_dialog import PresetDialog


@pytest.fixture
def presets(open_demo):
    window = open_demo("tiny_lm")
    window.init_panel.notes.presets_button.click()
    dialog = window.init_tools.preset_dialog
    assert isinstance(dialog, PresetDialog) and dialog.isVisible()
    return window, dialog


def rows(dialog: PresetDialog) -> list[str]:
    return [dialog.targets_list.item(i).text() for i in range(dialog.targets_list.count())]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_gpt2_names_its_source_and_lists_what_it_touches(presets):
    _window, dialog = presets
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("gpt2"))
    assert "Radford et al. 2019" in dialog.source_label.text()
    text = dialog.rules_edit.toPlainText()
    assert text.startswith("# preset gpt2 — source:") and "weights=normal(mean=0.0,std=0.02)" in text
    assert "n_layers=2: 4 residual projection(s)" in text  # out_proj and linear2 in each of 2 blocks
    listed = rows(dialog)
    assert "  embed.weight  [tied: also changes head.weight]" in listed  # ties shown before applying
    assert "  blocks.layers.0.linear2.weight" in listed
    assert any(r.startswith("type:*Norm*=ones") for r in listed)
    # the one matrix no rule selects: tiny_lm's positional table is a bare Parameter, no "weight" in its name
    assert listed[-1] == "not touched by any rule, keeping their values: 1 weight matrix(es): pos"
    assert "would change" in dialog.message.text() and "nothing is applied" in dialog.message.text()
    dialog.rules_edit.setPlainText("blocks.*.weight=zeros")
    dialog.refresh_targets()
    assert rows(dialog)[-1] == (  # attention's in_proj_weight has no ".weight": the glob misses it
        "not touched by any rule, keeping their values: 4 weight matrix(es): "
        "pos, embed.weight, blocks.layers.0.self_attn.in_proj_weight and 1 more"
    )


def test_edited_rules_apply_as_one_undoable_step(presets, qtbot):
    window, dialog = presets
    session = window.state.session
    model = session.model
    before = snapshot(model)
    dialog.choose("gpt2")
    editor = dialog.rules_edit
    editor.setPlainText(editor.toPlainText().replace("weights=normal(mean=0.0,std=0.02)", "weights=normal(mean=0.0,std=0.5)"))
    editor.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.keyClicks(editor, "blocks.layers.1.linear1.weight=zeros")  # typed: the list follows
    qtbot.waitUntil(lambda: "blocks.layers.1.linear1.weight=zeros: 1 tensor(s)" in rows(dialog))
    assert "(edited)" in dialog.message.text()
    dialog.seed_edit.setText("3")
    with qtbot.waitSignal(dialog.applied) as blocker:
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert "embed.weight" in blocker.args[0]
    assert len(session.stack.history) == 1 and "edited from preset gpt2" in session.stack.undo_text
    embed = model.embed.weight.detach()
    assert float(embed.std()) == pytest.approx(0.5, rel=0.05)
    assert torch.count_nonzero(model.blocks.layers[1].linear1.weight) == 0  # the typed rule, last, wins
    assert all(torch.count_nonzero(b) == 0 for n, b in model.named_parameters() if n.endswith("linear1.bias"))
    norm = model.norm
    assert torch.equal(norm.weight.detach(), torch.ones_like(norm.weight)) and torch.count_nonzero(norm.bias) == 0
    residual = model.blocks.layers[0].linear2.weight.detach()
    assert float(residual.std()) == pytest.approx(0.02 / math.sqrt(2 * 2), rel=0.1)  # 0.02/sqrt(2 n_layers)
    window.undo()  # one step takes the whole preset back
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    window.redo()
    assert float(model.embed.weight.detach().std()) == pytest.approx(0.5, rel=0.05)


def test_arguments_and_bad_rules_are_one_line(presets, qtbot):
    _window, dialog = presets
    failures: list[str] = []
    dialog.failed.connect(failures.append)
    dialog.preset_combo.setCurrentIndex(dialog.preset_combo.findData("mup"))
    assert failures and "base_width" in failures[-1] and "\n" not in failures[-1]
    assert "base_width=…" in dialog.args_edit.placeholderText()
    qtbot.keyClicks(dialog.args_edit, "base_width=8")
    qtbot.keyClick(dialog.args_edit, Qt.Key.Key_Return)
    text = dialog.rules_edit.toPlainText()
    assert "width=32" in text and "base_width=8: width_mult=4" in text
    dialog.rules_edit.setPlainText("*.wieght=zeros")
    dialog.refresh_targets()
    assert rows(dialog)[0] == "*.wieght=zeros: hits nothing"  # a typo shows before applying
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert failures[-1].startswith("rule '*.wieght=zeros' hits nothing") and "\n" not in failures[-1]
    assert not dialog.state.session.stack.history


def test_lsuv_preset_uses_the_dialogs_input(presets, qtbot):
    window, dialog = presets
    dialog.choose("lsuv")
    assert dialog.input_edit.text() == "randint(64, 8, high=100)"  # the model's input, a larger batch
    assert any("lsuv(tol=0.05,input='randint(64, 8, high=100)')" in r for r in rows(dialog))
    dialog.seed_edit.setText("1")
    with qtbot.waitSignal(dialog.applied):
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
        assert window.state.model_busy == "preset"  # its forward passes run in the worker, not here
    assert window.state.model_busy is None
    assert "skipped" in dialog.message.text()  # LayerNorm weights are 1-D: refused, left as they are
    assert "out_proj: not called as a module" in dialog.message.text()  # LSUV's own note
    assert len(window.state.session.stack.history) == 1


def test_a_preset_failing_in_the_worker_is_one_line_and_changes_nothing(presets, qtbot):
    window, dialog = presets
    model = window.state.session.model
    before = snapshot(model)
    dialog.choose("lsuv")
    dialog.input_edit.setText("randn(4, 3)")  # not token ids: the model's forward fails inside lsuv
    with qtbot.waitSignal(dialog.failed) as blocker:
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert "\n" not in blocker.args[0]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # what was done, undone
    assert not window.state.session.stack.history and window.state.model_busy is None
    assert dialog.apply_button.isEnabled()


def test_a_preset_on_thousands_of_tensors_is_planned_in_a_worker(qtbot, many_tensors_state):
    """Planning gpt2's rules over a checkpoint of 94,000 tensors froze the window 6 s when the
    dialog opened (and at every edit): a model of thousands of tensors is planned in a worker,
    and the list shows the first lines and counts the rest."""
    from paramscope.gui.panels.preset_plan import LISTED_LINES

    state = many_tensors_state(3000)  # (more than BACKGROUND_TENSORS)
    dialog = PresetDialog(state)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: not dialog.planner.is_running, timeout=60_000)
    with qtbot.waitSignal(dialog.planner.finished, timeout=60_000):
        dialog.choose("gpt2")
        assert dialog.planner.is_running and dialog.targets_list.count() == 0  # the window goes on
        assert not dialog.apply_button.isEnabled()  # the editor does not hold gpt2's rules yet
    assert "weights=normal(mean=0.0,std=0.02)" in dialog.rules_edit.toPlainText()
    assert dialog.apply_button.isEnabled()
    listed = rows(dialog)
    assert len(listed) == LISTED_LINES + 1 and listed[1] == "  blocks.0.layers.0.weight"
    assert listed[-1].startswith("… and ") and "more lines" in listed[-1]
    assert "would change 3000 tensor(s)" in dialog.message.text()

    with qtbot.waitSignal(dialog.planner.finished, timeout=60_000):  # an edit is planned there too
        dialog.rules_edit.setPlainText("blocks.0.*=zeros")
    assert rows(dialog)[0] == "blocks.0.*=zeros: 10 tensor(s)"
    assert not state.session.stack.can_undo  # nothing applied
