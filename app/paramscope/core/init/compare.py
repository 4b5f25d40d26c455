"""Initialization schemes compared on the signal: the same input through each, model restored after.

For each scheme (``current`` — the weights as they are —, a preset from
:mod:`paramscope.core.init.presets` such as ``gpt2`` or ``mup(base_width=32)``, or one rule
``SELECTOR=INIT(...)``) the scheme's rules are applied with one seed, one forward and backward
runs on the same input with the same seed (:func:`paramscope.core.backward.backward.run_backward`), the
activation and gradient std of every leaf layer call are kept (:mod:`paramscope.core.backward.signal`),
and the change is undone. The session's undo history is not touched, and every ``.grad`` is put
back as it was, so comparing changes nothing.

This answers "what does this scheme do to the signal through *my* model on *my* input": a
scheme whose activation std shrinks or grows layer after layer (Glorot & Bengio 2010; He et al.
2015, §2.2) shows it here before any training.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from paramscope.core.backward.input_specs import InputSpec
from paramscope.core.backward.signal import SignalPoint
from paramscope.core.edit.command_group import CommandGroup
from paramscope.core.errors import ParamscopeError, listed
from paramscope.core.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session

CURRENT = "current"


@dataclass
class SchemeSignal:
    """One scheme's run: the rules it applied, what they said, and the signal per depth."""

    name: str
    rules: list[str]
    points: list[SignalPoint]
    loss: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "scheme": self.name,
            "rules": self.rules,
            "loss": self.loss,
            "notes": self.notes,
            "signal": [p.to_dict() for p in self.points],
        }


@dataclass
class Comparison:
    inputs: str
    seed: int
    schemes: list[SchemeSignal]

    def layers(self) -> list[tuple[int, str, str]]:
        """``(depth, module, type)`` of the longest run (the schemes share one model)."""
        longest = max(self.schemes, key=lambda s: len(s.points), default=None)
        return [] if longest is None else [(p.index, p.module, p.type_name) for p in longest.points]

    def to_dict(self) -> dict[str, object]:
        return {
            "input": self.inputs,
            "seed": self.seed,
            "layers": [{"index": i, "module": m, "type": t} for i, m, t in self.layers()],
            "schemes": [s.to_dict() for s in self.schemes],
        }

    def csv(self) -> str:
        """One row per depth: the layer, then activation and gradient std per scheme."""
        head = ["index", "module", "type"]
        for s in self.schemes:
            head += [f"{s.name} activation_std", f"{s.name} gradient_std"]
        rows = [",".join(_csv_cell(h) for h in head)]
        for index, module, type_name in self.layers():
            cells = [str(index), module, type_name]
            for s in self.schemes:
                point = s.points[index] if index < len(s.points) else None
                cells += [_num(point.activation_std if point else None), _num(point.gradient_std if point else None)]
            rows.append(",".join(_csv_cell(c) for c in cells))
        return "\n".join(rows) + "\n"


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text


def scheme_rules(session: Session, scheme: str, input_text: str | None) -> tuple[list[str], list[str]]:
    """The rules of ``scheme`` for this model and the comments saying where they came from."""
    from paramscope.core.init.presets import PRESETS, preset_rules
    from paramscope.core.init.rule_parse import fill_input

    name = scheme.strip()
    if name == CURRENT:
        return [], []
    if name.split("(")[0].strip() in PRESETS:
        made = preset_rules(name, session.model, session.report)
        rules = [r.text for r in fill_input(made.rules, input_text)]
        return rules, made.comments
    if "=" in name:
        return [r.text for r in fill_input([name], input_text)], []
    known = ", ".join([CURRENT, *PRESETS])
    raise ParamscopeError(f"unknown scheme {scheme!r}; known: {known}, or a rule SELECTOR=INIT(...)")


def compare_schemes(session: Session, schemes: list[str], inputs: InputSpec, *, seed: int = 0,
                    loss: str = "sum", state: TaskState | None = None) -> Comparison:  # fmt: skip
    """Run ``inputs`` through the model under each scheme in turn (see the module docstring).

    Raises:
        ParamscopeError: an unknown scheme, a rule that cannot apply, a forward that fails.
            The model and its ``.grad`` are restored before it propagates.
    """
    from paramscope.core.backward.backward import run_backward

    state = ensure_state(state)
    if not schemes:
        raise ParamscopeError("compare-init: give at least one --scheme (current, a preset name, or a rule)")
    planned = [(s, *scheme_rules(session, s, inputs.text)) for s in schemes]  # bad names fail first
    grads = {id(p): (p, p.grad) for p in session.model.parameters()}
    results: list[SchemeSignal] = []
    try:
        for number, (scheme, rules, comments) in enumerate(planned):
            state.progress(number / len(planned), scheme)
            commands, notes = _apply(session, rules, seed)
            try:
                result = run_backward(session.model, inputs, loss, seed=seed, record_parts=False)
            finally:
                for command in reversed(commands):
                    command.undo()
            notes += [n for c in commands for n in c.rule_plan.run_notes]
            results.append(SchemeSignal(scheme.strip(), rules, result.signal, result.loss, comments + notes))
    finally:
        for param, grad in grads.values():
            param.grad = grad
    state.progress(1.0, "")
    return Comparison(inputs.text, seed, results)


def _apply(session: Session, rules: list[str], seed: int) -> tuple[list, list[str]]:
    """Build and do the rules' commands outside the undo history; return them and the notes."""
    from paramscope.core.init.rules import build_commands

    if not rules:
        return [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        the_plan, commands = build_commands(session, rules, seed, skip_refused=True)
    notes = [str(w.message) for w in caught]
    if the_plan.skipped:
        notes.append(f"skipped {len(the_plan.skipped)} tensor(s) the rules cannot apply to: "
                     + listed(sorted({n for _, n, _ in the_plan.skipped})))  # fmt: skip
    if commands:
        with torch.no_grad():
            CommandGroup("compare", commands).do()  # all or, on a failure, none
    return commands, notes
