"""Value edits outside autograd, as the tutorial's ``param.data += 1``.

Each edit is a :class:`ValueEditCommand` (undoable through ``Session.execute``). It runs under
``torch.no_grad`` on the tensor's data, so no graph is recorded and ``.grad`` is left as it was.

Example:
    >>> session.execute(value_edit_command(session, ["0.bias", "2.bias"], "add", 1.0))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from paramscope.core.edit.commands import TensorEditCommand, TensorOf
from paramscope.core.edit.expressions import compile_expression
from paramscope.core.edit.replay import format_value
from paramscope.core.errors import ParamscopeError, listed
from paramscope.core.model.report import is_lazy
from paramscope.core.model.tensor_stats import data_problem

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session

EDIT_KINDS = ("add", "multiply", "set", "clamp", "expression")


class ValueEditError(ParamscopeError):
    """A value edit that cannot apply (bad arguments, a tensor without data)."""


def _apply(tensor: torch.Tensor, kind: str, value: float | None, low: float | None,
           high: float | None, expression: str | None) -> None:  # fmt: skip
    data = tensor.detach()
    if kind == "add":
        data.add_(value)
    elif kind == "multiply":
        data.mul_(value)
    elif kind == "set":
        data.fill_(value)
    elif kind == "clamp":
        data.clamp_(min=low, max=high)
    elif kind == "expression":
        assert expression is not None
        data.copy_(compile_expression(expression).evaluate(data.clone()))
    else:
        raise ValueEditError(f"unknown value edit {kind!r}; known: {', '.join(EDIT_KINDS)}")


def describe_edit(kind: str, value: float | None = None, low: float | None = None,
                  high: float | None = None, expression: str | None = None) -> str:  # fmt: skip
    if kind == "add":
        return f"+= {value:g}"
    if kind == "multiply":
        return f"*= {value:g}"
    if kind == "set":
        return f"= {value:g}"
    if kind == "clamp":
        return f"clamp({low}, {high})"
    return f"x -> {expression}"


def _replay_line(target: str, kind: str, value: float | None, low: float | None,
                 high: float | None, expression: str | None) -> str:  # fmt: skip
    if kind == "add":
        return f"{target}.add_({format_value(value)})"
    if kind == "multiply":
        return f"{target}.mul_({format_value(value)})"
    if kind == "set":
        return f"{target}.fill_({format_value(value)})"
    if kind == "clamp":
        return f"{target}.clamp_(min={format_value(low)}, max={format_value(high)})"
    return f"{target}.copy_(expression({expression!r}, {target}))"


class ValueEditCommand(TensorEditCommand):
    """An undoable value edit of some tensors; ``replay_code`` repeats it on a fresh model."""

    def __init__(self, session: Session, names: Sequence[str], kind: str, value: float | None = None,
                 low: float | None = None, high: float | None = None, expression: str | None = None) -> None:  # fmt: skip
        canonical = list(dict.fromkeys(session.canonical(n) for n in names))
        self.kind = kind
        targets = [(n, session.tensor(n)) for n in canonical]
        live = dict(targets)

        def compute(tensor_of: TensorOf) -> None:
            for name in canonical:
                _apply(tensor_of(name), kind, value, low, high, expression)

        text = f"{listed(canonical)} {describe_edit(kind, value, low, high, expression)}"

        def mutate() -> None:
            compute(live.__getitem__)

        super().__init__(text, targets, mutate, shared=session.shared_storage, compute=compute)
        self.replay_code = "\n".join(
            [f"# {text}"] + [_replay_line(f"T({n!r})", kind, value, low, high, expression) for n in canonical]
        )


def value_edit_command(session: Session, names: Sequence[str], kind: str, value: float | None = None,
                       low: float | None = None, high: float | None = None,
                       expression: str | None = None) -> ValueEditCommand:  # fmt: skip
    """Check and build a value edit of ``names`` (any alias); execute it with ``session.execute``.

    Args:
        kind: ``add``, ``multiply``, ``set``, ``clamp`` (``low``/``high``, either may be None) or
            ``expression`` (in ``x``, see :mod:`paramscope.core.edit.expressions`).
        value: the number for add/multiply/set.

    Raises:
        ValueEditError: bad arguments, an unknown tensor, or a tensor without data.
    """
    if kind not in EDIT_KINDS:
        raise ValueEditError(f"unknown value edit {kind!r}; known: {', '.join(EDIT_KINDS)}")
    if not names:
        raise ValueEditError("value edit: no tensors selected")
    if kind in ("add", "multiply", "set") and value is None:
        raise ValueEditError(f"{kind}: needs a value")
    if kind == "clamp":
        if low is None and high is None:
            raise ValueEditError("clamp: give a lower bound, an upper bound or both")
        if low is not None and high is not None and low > high:
            raise ValueEditError(f"clamp: lower bound {low} is above upper bound {high}")
    if kind == "expression":
        compile_expression(expression or "")  # raises ExpressionError with the reason
    for name in names:
        if session.canonical(name) not in session.report.parameters and session.canonical(name) not in session.report.buffers:
            raise ValueEditError(f"value edit: no tensor named {name!r}")
        tensor = session.editable(name)
        problem = "uninitialized (lazy) parameter" if is_lazy(tensor) else data_problem(tensor)
        if problem is not None:
            raise ValueEditError(f"{name}: {problem}")
    return ValueEditCommand(session, names, kind, value, low, high, expression)
