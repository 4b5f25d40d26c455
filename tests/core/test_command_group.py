"""A preset's rules as one undoable step, and the sample batch the window measures stds on."""

from __future__ import annotations

import pytest
import torch
from torch.nn import init

from paramscope.core.backward.input_specs import InputSpec
from paramscope.core.backward.sample_input import sample_batch
from paramscope.core.edit.command_group import CommandGroup
from paramscope.core.edit.replay import replay_script
from paramscope.core.edit.session import Session
from paramscope.core.init.rules import build_commands
from paramscope.core.sources.sources import open_source

# Two rules hitting one tensor: the second overwrites part of what the first wrote.
OVERLAPPING = ["*.weight=normal(std=0.02)", "2.weight=constant(val=0.5)", "*.bias=zeros"]


def _bytes(session: Session) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in session.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_undo_takes_back_overlapping_rules_and_redo_restores_them():
    session = Session(open_source("demo:mlp"))
    before = _bytes(session)
    _, commands = build_commands(session, OVERLAPPING, seed=3)
    session.execute(CommandGroup("preset test", commands))
    after = _bytes(session)
    generator = torch.Generator().manual_seed(3)  # what a plain script does with the same seed
    plain = open_source("demo:mlp").model
    with torch.no_grad():
        for name in ("0.weight", "2.weight"):
            init.normal_(plain.get_parameter(name), std=0.02, generator=generator)
        init.constant_(plain.get_parameter("2.weight"), 0.5)
        for name in ("0.bias", "2.bias"):
            init.zeros_(plain.get_parameter(name))
    assert _same(after, {k: v.detach() for k, v in plain.state_dict().items()})
    assert len(session.stack.history) == 1
    session.undo()
    assert _same(_bytes(session), before)  # one step, all rules: 2.weight back to its first values
    session.redo()
    assert _same(_bytes(session), after)


def test_group_values_and_touched_span_the_members():
    session = Session(open_source("demo:mlp"))
    original = session.tensor("2.weight").detach().clone()
    _, commands = build_commands(session, OVERLAPPING, seed=0)
    group = CommandGroup("preset test", commands)
    session.execute(group)
    assert group.touched == ("0.weight", "2.weight", "0.bias", "2.bias")
    assert torch.equal(group.values("2.weight", after=False), original)
    assert torch.equal(group.values("2.weight", after=True), torch.full_like(original, 0.5))
    assert group.values("nothing", after=True) is None
    assert group.nbytes == sum(c.nbytes for c in commands)


def test_a_failing_member_undoes_the_ones_before():
    session = Session(open_source("demo:mlp"))
    before = _bytes(session)
    _, commands = build_commands(session, OVERLAPPING[:2], seed=0)

    class Fails(type(commands[0])):  # the second member raises after the first wrote
        def do(self) -> None:
            raise RuntimeError("disk on fire")

    commands[1].__class__ = Fails
    with pytest.raises(RuntimeError, match="disk on fire"):
        session.execute(CommandGroup("preset test", commands))
    assert _same(_bytes(session), before)


def test_replay_script_repeats_the_group(tmp_path):
    session = Session(open_source("demo:mlp"))
    _, commands = build_commands(session, OVERLAPPING, seed=11)
    session.execute(CommandGroup("preset test", commands))
    namespace: dict[str, object] = {"__name__": "replayed"}
    exec(compile(replay_script(session), "replay.py", "exec"), namespace)
    replayed = namespace["replay"](open_source("demo:mlp").model)  # type: ignore[operator]
    assert _same({k: v.detach() for k, v in replayed.state_dict().items()}, _bytes(session))


def test_an_empty_group_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        CommandGroup("nothing", [])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("rand(2,64)", "rand(64, 64)"),
        ("randint(2, 8, high=100)", "randint(64, 8, high=100)"),
        ("rand(2,4); rand(2,3)", "rand(64, 4); rand(64, 3)"),
        ("rand(2,4); rand(3,4)", "rand(2, 4); rand(3, 4)"),  # first sizes differ: not a batch
        ("rand(2, 3, 1024, 1024)", "rand(2, 3, 1024, 1024)"),  # already over the element budget
        ("rand(2, 3, 128, 128)", "rand(21, 3, 128, 128)"),  # grown only up to the budget
        ("rand(128, 4)", "rand(128, 4)"),  # never shrinks
    ],
)
def test_sample_batch_grows_the_batch_within_the_budget(spec, expected):
    assert sample_batch(InputSpec.parse(spec)).text == expected
