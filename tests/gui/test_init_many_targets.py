"""The Initialize panel on a rule over many tensors: listed briefly, planned and built in the
worker, applied with the bytes a plain torch script writes, and every text short (issue 14, item 6).

A checkpoint of 100,000 tiny tensors froze the window for seconds on each keystroke of a rule
(every target planned and listed), on Apply (planned and built on the GUI thread) and on every
undo (a label holding all 100,000 names laid out again). The limits are lowered here so that
a few hundred tensors take the same paths.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import init

import paramscope.core.state.init_state as init_state
import paramscope.gui.panels.init_work as init_work
from paramscope.gui.panels.init_panel import RULE, InitPanel

COUNT = 300  # blocks.{i}.layers.{j}.weight, shapes (3, 2) and (2,) alternating
SHORT = 600  # characters: what a message, a list row or an undo text may take (one line)


@pytest.fixture
def panel(qtbot, monkeypatch, many_tensors_state):
    monkeypatch.setattr(init_state, "LISTED_TARGETS", 20)
    monkeypatch.setattr(init_work, "BACKGROUND_TENSORS", 50)
    widget = InitPanel(many_tensors_state(COUNT))
    qtbot.addWidget(widget)
    widget.target_mode.setCurrentIndex(widget.target_mode.findData(RULE))
    return widget


def rows(widget: InitPanel) -> list[str]:
    return [widget.targets_list.item(i).text() for i in range(widget.targets_list.count())]


def test_a_rule_over_many_tensors_lists_the_first_and_counts_the_rest(panel):
    panel.rule_edit.setText("*.weight")
    listed = rows(panel)
    assert listed[:2] == ["blocks.0.layers.0.weight", "blocks.0.layers.1.weight"]
    assert len(listed) == 21
    assert listed[-1] == f"… and {COUNT - 20} more ({COUNT} in all; checked on Apply)"


def test_apply_over_many_tensors_runs_in_the_worker_and_writes_what_torch_writes(panel, qtbot):
    session = panel.state.session
    before = {name: session.tensor(name).detach().clone() for name in session.report.parameters}
    panel.rule_edit.setText("*.weight")
    panel.set_initializer("normal_")
    panel.set_field("std", 0.01)
    panel.seed_edit.setText("7")
    content = panel.message.parentWidget()  # inside the dock's scroll area
    width = content.minimumSizeHint().width()
    with qtbot.waitSignal(panel.applied, timeout=30_000) as applied:
        assert panel.apply()
        assert panel.is_applying  # planned, built and staged off the GUI thread
    names = list(before)  # the plan's order is the checkpoint's
    assert applied.args[0] == tuple(names)
    generator = torch.Generator().manual_seed(7)
    for name in names:
        expected = init.normal_(torch.empty_like(before[name]), 0.0, 0.01, generator=generator)
        assert torch.equal(session.tensor(name), expected), name
    message = panel.message.text()
    assert f"and {COUNT - 3} more" in message and len(message) < SHORT
    assert content.minimumSizeHint().width() <= width  # the message wraps; the dock never widens
    assert session.stack.undo_text.startswith("init blocks.0.layers.0.weight,") and len(session.stack.undo_text) < SHORT
    session.undo()
    assert all(torch.equal(session.tensor(name), before[name]) for name in names)


def test_a_refusal_found_in_the_worker_is_one_short_line_and_changes_nothing(panel, qtbot):
    session = panel.state.session
    before = {name: session.tensor(name).detach().clone() for name in session.report.parameters}
    panel.rule_edit.setText("*")
    panel.set_initializer("xavier_uniform_")  # refuses the 1-D half of the tensors
    errors = []
    panel.state.errorOccurred.connect(errors.append)
    with qtbot.waitSignal(panel.worker.done, timeout=30_000):
        assert panel.apply()
    assert len(errors) == 1 and "\n" not in errors[0] and len(errors[0]) < SHORT
    assert "nothing applied" in errors[0] and "more" in errors[0]
    assert not panel.is_applying and panel.state.model_busy is None
    assert all(torch.equal(session.tensor(name), before[name]) for name in before)


def test_skipping_refused_tensors_over_many_says_how_many_were_skipped(panel, qtbot):
    session = panel.state.session
    panel.rule_edit.setText("*")
    panel.set_initializer("xavier_uniform_")
    panel.skip_refused.setChecked(True)
    with qtbot.waitSignal(panel.applied, timeout=30_000) as applied:
        assert panel.apply()
    touched = applied.args[0]
    assert len(touched) == COUNT // 2 and all(session.tensor(n).dim() == 2 for n in touched)
    message = panel.message.text()
    assert f"skipped blocks.0.layers.1.weight, blocks.0.layers.3.weight, blocks.0.layers.5.weight and {COUNT // 2 - 3} more" in message


def test_a_value_edit_of_many_tensors_is_built_in_the_worker(panel, qtbot):
    session = panel.state.session
    before = {name: session.tensor(name).detach().clone() for name in session.report.parameters}
    panel.rule_edit.setText("*")
    panel.edit_state.kind, panel.edit_state.value = "multiply", -2.0
    with qtbot.waitSignal(panel.applied, timeout=30_000) as applied:
        assert panel.apply_value_edit()
        assert panel.is_applying
    assert len(applied.args[0]) == COUNT
    assert all(torch.equal(session.tensor(name), before[name] * -2.0) for name in before)
    text = session.stack.undo_text
    assert text.startswith("blocks.0.layers.0.weight, ") and text.endswith(f"and {COUNT - 3} more *= -2")
    session.undo()
    assert all(torch.equal(session.tensor(name), before[name]) for name in before)


def test_opening_another_model_while_the_worker_builds_applies_nothing_to_either(panel, qtbot):
    old = panel.state.session
    before = {name: old.tensor(name).detach().clone() for name in old.report.parameters}
    panel.rule_edit.setText("*.weight")
    assert panel.apply()
    with qtbot.waitSignal(panel.worker.done, timeout=30_000):
        assert panel.state.open("demo:mlp")  # the result, when it comes, belongs to the old model
    new = panel.state.session
    assert new is not old and not new.stack.can_undo and not old.stack.can_undo
    assert all(torch.equal(old.tensor(name), before[name]) for name in before)
    assert not panel.is_applying and new.model_busy is None
