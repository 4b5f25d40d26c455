"""Staged edits: new values computed off the model (a worker thread), then swapped in by ``do``.

A staged command must give exactly the bytes of the synchronous ``do`` with the same seed, leave
the model untouched until ``do``, and undo/redo like any other command.
"""

from __future__ import annotations

import threading

import pytest
import torch
from small_models import SharedRow

from paramscope.core.edit.commands import StaleEditError, TensorEditCommand
from paramscope.core.edit.session import Session
from paramscope.core.edit.value_edits import value_edit_command
from paramscope.core.errors import Cancelled
from paramscope.core.init.rules import build_commands
from paramscope.core.sources.sources import OpenedModel, open_source
from paramscope.core.tasks import TaskState


def _bytes(session: Session) -> dict[str, bytes]:
    state = session.model.state_dict()
    return {
        k: v.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        for k, v in state.items()
    }


def _stage_in_thread(
    command: TensorEditCommand, state: TaskState | None = None
) -> BaseException | None:
    """Stage as the GUI's worker does: in another thread (grad mode is thread-local there)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            command.stage(state)
        except BaseException as exc:  # noqa: BLE001  (handed back to the test)
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return failure[0] if failure else None


RULES = [
    "*.weight=normal(std=0.02)",
    "*=uniform(a=-1, b=1)",
    "*.weight=xavier_uniform(gain=2)",
    "*.weight=kaiming_normal(mode=fan_out)",
    "*.bias=constant(val=0.5)",
    "*.weight=trunc_normal(std=0.1)",
]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("demo", ["mlp", "tiny_lm"])
def test_staged_init_equals_the_synchronous_one_and_undoes_exactly(demo: str, rule: str) -> None:
    synchronous, staged = Session(open_source(f"demo:{demo}")), Session(open_source(f"demo:{demo}"))
    original = _bytes(staged)
    _, (expected,) = build_commands(synchronous, [rule], seed=7, skip_refused=True)  # 1-D weights
    synchronous.execute(expected)

    _, (command,) = build_commands(staged, [rule], seed=7, skip_refused=True)
    assert command.can_stage and not command.staged
    pointers = {n: staged.tensor(n).data_ptr() for n in command.touched}
    assert _stage_in_thread(command) is None
    assert command.staged and not command.can_stage
    assert _bytes(staged) == original  # computed off the model
    assert {n: staged.tensor(n).data_ptr() for n in command.touched} == pointers
    staged.execute(command)
    after = _bytes(staged)
    assert after == _bytes(synchronous)
    assert staged.tensor(command.touched[0]).requires_grad  # still a Parameter with its flags

    staged.undo()
    assert _bytes(staged) == original
    assert {n: staged.tensor(n).data_ptr() for n in command.touched} == pointers  # swapped back
    staged.redo()
    assert _bytes(staged) == after


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("add", {"value": 1.0}),
        ("multiply", {"value": -2.0}),
        ("set", {"value": 0.5}),
        ("clamp", {"low": -0.1, "high": 0.1}),
        ("expression", {"expression": "where(abs(x) > 0.2, x, 0) * 3"}),
    ],
)
def test_staged_value_edit_equals_the_synchronous_one(kind: str, kwargs: dict) -> None:
    synchronous, staged = Session(open_source("demo:mlp")), Session(open_source("demo:mlp"))
    original = _bytes(staged)
    synchronous.execute(value_edit_command(synchronous, ["0.weight", "2.bias"], kind, **kwargs))
    command = value_edit_command(staged, ["0.weight", "2.bias"], kind, **kwargs)
    assert command.can_stage
    assert _stage_in_thread(command) is None
    assert _bytes(staged) == original
    staged.execute(command)
    assert _bytes(staged) == _bytes(synchronous)
    staged.undo()
    assert _bytes(staged) == original


def test_commands_that_cannot_stage_still_apply_and_undo() -> None:

    session = Session(OpenedModel(SharedRow(), "views", "live"))
    _, (shared,) = build_commands(session, ["b=constant(val=5)"], seed=0)
    _, (alone,) = build_commands(session, ["c=constant(val=2)"], seed=0)
    assert not shared.can_stage and alone.can_stage
    with pytest.raises(RuntimeError, match="cannot be staged"):
        shared.stage()
    session.execute(shared)
    assert torch.equal(session.tensor("a")[1], torch.full((4,), 5.0))
    session.undo()
    assert not session.tensor("a").detach().any()

    mlp = Session(open_source("demo:mlp"))
    original = _bytes(mlp)
    _, (default,) = build_commands(mlp, ["*=default"], seed=3)
    assert not default.can_stage  # reset_parameters() acts on the live module
    mlp.execute(default)
    assert _bytes(mlp) != original
    mlp.undo()
    assert _bytes(mlp) == original


def test_a_custom_initializer_stays_on_the_model() -> None:
    from paramscope.core.init.custom_init import custom_from_source
    from paramscope.core.init.rule_parse import InitRule

    session = Session(open_source("demo:mlp"))
    custom = custom_from_source("def f(t, generator):\n    t.normal_(generator=generator)\n", "f")
    _, (command,) = build_commands(session, [InitRule.make("*.weight", custom)], seed=0)
    assert not command.can_stage  # user code may read the live module or global state


def test_a_target_changed_after_staging_refuses_and_leaves_the_model() -> None:
    session = Session(open_source("demo:mlp"))
    _, (command,) = build_commands(session, ["*.weight=normal(std=0.02)"], seed=1)
    command.stage()
    session.execute(value_edit_command(session, ["0.weight"], "add", value=1.0))
    changed = _bytes(session)
    with pytest.raises(StaleEditError, match="0.weight changed while"):
        session.execute(command)
    assert _bytes(session) == changed
    assert session.stack.undo_text.endswith("+= 1")  # the staged one was not recorded


def test_a_cancelled_stage_changes_nothing() -> None:
    session = Session(open_source("demo:mlp"))
    original = _bytes(session)
    _, (command,) = build_commands(session, ["*.weight=normal(std=0.02)"], seed=1)
    state = TaskState()
    state.cancel()
    assert isinstance(_stage_in_thread(command, state), Cancelled)
    assert not command.staged and _bytes(session) == original and not session.stack.can_undo


def test_stage_reports_progress_per_tensor() -> None:
    session = Session(open_source("demo:mlp"))
    _, (command,) = build_commands(session, ["*=normal(std=0.02)"], seed=1)
    seen: list[tuple[float, str]] = []
    command.stage(TaskState(lambda fraction, message: seen.append((fraction, message))))
    assert tuple(m for _, m in seen) == command.touched and seen[0][0] == 0.0
