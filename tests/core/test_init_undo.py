"""Undo/redo of inits and value edits: any sequence leaves exactly the expected bytes."""

from __future__ import annotations

import fnmatch

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import init

from paramscope.core.edit.commands import CommandStack
from paramscope.core.edit.session import Session
from paramscope.core.edit.value_edits import value_edit_command
from paramscope.core.init.rules import apply_rules
from paramscope.core.sources.sources import open_source

# (rule text, how a plain script does the same: fn(model, generator))


def _params(model: nn.Module, pattern: str) -> list[nn.Parameter]:
    seen: dict[int, nn.Parameter] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if fnmatch.fnmatchcase(name, pattern):
            seen.setdefault(id(param), param)
    return list(seen.values())


def _direct(pattern: str, function, **kwargs):
    def run(model: nn.Module, generator: torch.Generator) -> None:
        for param in _params(model, pattern):
            if "generator" in function.__code__.co_varnames:
                function(param, **kwargs, generator=generator)
            else:
                function(param, **kwargs)

    return run


def _direct_default(model: nn.Module, generator: torch.Generator) -> None:
    seen: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module) not in seen:
            seen.add(id(module))
            seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                module.reset_parameters()


RULES = {
    "demo:mlp": [
        ("*.weight=normal(std=0.1)", _direct("*.weight", init.normal_, std=0.1)),
        ("*.bias=constant(val=0.5)", _direct("*.bias", init.constant_, val=0.5)),
        ("*=default", _direct_default),
        ("0.*=uniform(a=-1, b=1)", _direct("0.*", init.uniform_, a=-1.0, b=1.0)),
        ("*.weight=xavier_uniform(gain=2)", _direct("*.weight", init.xavier_uniform_, gain=2.0)),
        ("2.weight=orthogonal", _direct("2.weight", init.orthogonal_)),
    ],
    "demo:shared": [
        ("*=normal", _direct("*", init.normal_)),
        ("1.weight=constant(val=3)", _direct("1.weight", init.constant_, val=3.0)),
        ("*=default", _direct_default),
        ("0.weight=kaiming_normal(nonlinearity=relu)", _direct("0.weight", init.kaiming_normal_, nonlinearity="relu")),
    ],
}

EDITS = {
    "add": lambda t, v: t.add_(v),
    "multiply": lambda t, v: t.mul_(v),
    "set": lambda t, v: t.fill_(v),
    "clamp": lambda t, v: t.clamp_(min=-abs(v), max=abs(v)),
    "expression": lambda t, v: t.copy_(torch.where(t.abs() >= abs(v), t, 0) * 2 - 1),
}

operation = st.one_of(
    st.tuples(st.just("init"), st.integers(0, 5), st.integers(0, 2**31)),
    st.tuples(st.just("edit"), st.sampled_from(sorted(EDITS)), st.floats(-3, 3, allow_nan=False, width=32),
              st.integers(0, 3)),  # fmt: skip
    st.tuples(st.just("undo")),
    st.tuples(st.just("redo")),
)


def _apply_direct(model: nn.Module, op: tuple, spec: str) -> None:
    with torch.no_grad():
        if op[0] == "init":
            _, direct = RULES[spec][op[1] % len(RULES[spec])]
            direct(model, torch.Generator().manual_seed(op[2]))
        else:
            _, kind, value, which = op
            params = list(model.parameters())  # remove_duplicate: a tied weight edited once
            EDITS[kind](params[which % len(params)].detach(), float(value))


def _apply_session(session: Session, op: tuple, spec: str) -> None:
    if op[0] == "init":
        text, _ = RULES[spec][op[1] % len(RULES[spec])]
        apply_rules(session, [text], seed=op[2])
    else:
        _, kind, value, which = op
        names = list(session.report.parameters)
        name = names[which % len(names)]
        value = float(value)
        if kind == "clamp":
            command = value_edit_command(session, [name], "clamp", low=-abs(value), high=abs(value))
        elif kind == "expression":
            command = value_edit_command(session, [name], "expression", expression=f"where(abs(x) >= {abs(value)!r}, x, 0) * 2 - 1")
        else:
            command = value_edit_command(session, [name], kind, value)
        session.execute(command)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=st.sampled_from(sorted(RULES)), ops=st.lists(operation, max_size=14))
def test_any_sequence_of_inits_edits_undos_and_redos_leaves_the_expected_bytes(spec, ops):
    session = Session(open_source(spec))
    done: list[tuple] = []
    undone: list[tuple] = []
    for op in ops:
        if op[0] == "undo":
            if done:
                undone.append(done.pop())
            session.undo()
        elif op[0] == "redo":
            if undone:
                done.append(undone.pop())
            session.redo()
        else:
            _apply_session(session, op, spec)
            done.append(op)
            undone.clear()
        reference = open_source(spec).model
        for effective in done:
            _apply_direct(reference, effective, spec)
        for name, tensor in reference.state_dict().items():
            assert torch.equal(session.model.state_dict()[name], tensor), (name, op)
    if spec == "demo:shared":
        assert session.model[0].weight is session.model[1].weight


def test_undo_memory_is_bounded_and_the_limit_is_visible():
    session = Session(open_source("demo:deep_mlp"), stack=CommandStack(limit_bytes=200_000))
    per_init = 64 * 64 * 4  # one 64x64 float32 weight held per init (its data is swapped, not copied)
    for seed in range(20):
        apply_rules(session, ["0.weight=normal"], seed=seed)
    stack = session.stack
    assert stack.limit_bytes == 200_000
    assert stack.nbytes <= stack.limit_bytes
    assert stack.dropped == 20 - stack.nbytes // per_init
    assert stack.dropped > 0
    undone = 0
    while session.undo() is not None:
        undone += 1
    assert undone == 20 - stack.dropped
    # The oldest kept change is undone, the dropped ones are not: the weight is the result of the last
    # dropped init (seed dropped-1), which is what a user was told by the undo history.
    expected = open_source("demo:deep_mlp").model[0].weight.detach().clone()
    init.normal_(expected, generator=torch.Generator().manual_seed(stack.dropped - 1))
    assert torch.equal(session.tensor("0.weight"), expected)
