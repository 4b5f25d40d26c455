"""Session and command stack: undo/redo, ties, listeners, memory limit."""

from __future__ import annotations

import pytest
import torch
from small_models import SharedRow

from paramscope.core.edit.commands import CommandStack, TensorEditCommand
from paramscope.core.edit.session import Session
from paramscope.core.sources.sources import open_source


def _fill(session: Session, name: str, value: float) -> TensorEditCommand:
    tensor = session.tensor(name)
    return TensorEditCommand(f"fill {name}", [(session.canonical(name), tensor)], lambda: tensor.fill_(value))


def test_edit_through_one_alias_changes_both_and_undo_restores() -> None:
    session = Session(open_source("demo:shared"))
    original = session.model[0].weight.detach().clone()
    heard: list[tuple[str, ...]] = []
    session.add_listener(heard.append)
    session.execute(_fill(session, "1.weight", 3.0))
    assert session.model[0].weight.item() == 3.0
    assert heard == [("0.weight",)]
    assert session.modified
    session.undo()
    assert torch.equal(session.model[0].weight.detach(), original)
    session.redo()
    assert session.model[1].weight.item() == 3.0


def test_previous_summary_kept_for_before_after() -> None:
    session = Session(open_source("demo:mlp"))
    before = session.ensure_summary("0.bias")
    session.execute(_fill(session, "0.bias", 0.0))
    assert session.previous_summary("0.bias") is before
    assert session.summary("0.bias") is None
    assert session.ensure_summary("0.bias").stats.max == 0.0


def test_failed_command_changes_nothing_and_is_not_recorded() -> None:
    session = Session(open_source("demo:mlp"))
    tensor = session.tensor("0.weight")
    original = tensor.detach().clone()

    def half_done() -> None:
        tensor.fill_(7.0)
        raise ValueError("midway")

    with pytest.raises(ValueError, match="midway"):
        session.execute(TensorEditCommand("bad", [("0.weight", tensor)], half_done))
    assert torch.equal(tensor.detach(), original)
    assert not session.stack.can_undo


def test_memory_limit_drops_oldest_commands() -> None:
    stack = CommandStack(limit_bytes=3 * 2 * 400)  # three commands of one 100-float tensor
    t = torch.zeros(100)
    for i in range(5):
        stack.push(TensorEditCommand(f"fill {i}", [("t", t)], lambda i=i: t.fill_(float(i))))
    assert stack.dropped == 2
    assert len(stack.history) == 3
    while stack.undo() is not None:
        pass
    assert t[0].item() == 1.0  # the state before the oldest command still kept


def test_clean_mark() -> None:
    stack = CommandStack()
    t = torch.zeros(2)
    stack.push(TensorEditCommand("a", [("t", t)], lambda: t.add_(1)))
    stack.set_clean()
    assert stack.is_clean
    stack.undo()
    assert not stack.is_clean
    stack.redo()
    assert stack.is_clean


def test_exclusive_tensors_are_swapped_not_copied_and_views_stay_views() -> None:
    from paramscope.core.init.rules import apply_rules
    from paramscope.core.sources.sources import OpenedModel

    model = SharedRow()
    session = Session(OpenedModel(model, "views", "live"))
    assert session.shared_storage == {"a", "b"}
    c_storage = model.c.data_ptr()
    apply_rules(session, ["c=ones", "b=constant(val=5)"], seed=0)
    assert model.c.data_ptr() != c_storage  # swapped: the old data is the undo state, no copy
    assert torch.equal(model.a[1], torch.full((4,), 5.0))  # the view was edited in place
    session.undo()
    assert torch.equal(model.a, torch.zeros(4, 4)) and model.b.data.data_ptr() == model.a[1].data_ptr()
    session.undo()
    assert model.c.data_ptr() == c_storage and torch.equal(model.c, torch.zeros(3, 3))
    session.redo()
    session.redo()
    assert torch.equal(model.c, torch.ones(3, 3)) and torch.equal(model.b, torch.full((4,), 5.0))


def test_previous_summary_is_computed_only_when_asked_and_matches_the_old_values() -> None:
    from paramscope.core.init.rules import apply_rules
    from paramscope.core.model.model_statistics import summarize

    session = Session(open_source("demo:mlp"))
    original = session.tensor("0.weight").detach().clone()
    apply_rules(session, ["0.weight=zeros"], seed=0)  # no summary was computed before
    assert session.summary("0.weight") is None
    previous = session.previous_summary("0.weight")
    assert previous is not None and previous.stats == summarize(original).stats
    session.undo()  # before the undo the weight was all zeros
    assert session.previous_summary("0.weight").stats.max == 0.0
