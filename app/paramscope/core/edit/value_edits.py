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
from paramscope.core.model.dtypes import computed_in, holds_numbers, no_numbers_reason
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
    wider = computed_in(data.dtype)
    if wider is not None:  # torch has no add or clamp for this dtype: on a copy, written back
        work = data.to(wider)
        _apply(work, kind, value, low, high, expression)
        data.copy_(work)
        return
    if _integral(data):  # a float would not cast into an integer tensor (checked to be whole)
        value, low, high = (None if v is None else int(v) for v in (value, low, high))
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


def _integral(data: torch.Tensor) -> bool:
    return not (data.is_floating_point() or data.is_complex())


def _refusal(name: str, tensor: torch.Tensor, kind: str, numbers: Sequence[float | None]) -> str | None:
    """Why ``kind`` with these numbers cannot apply to ``tensor`` (by its dtype), or None."""
    dtype = str(tensor.dtype).removeprefix("torch.")
    if not holds_numbers(tensor.dtype):
        return f"{name}: {no_numbers_reason(tensor.dtype)}"
    if kind == "clamp" and tensor.is_complex():
        return f"{name} holds complex values, which have no order to clamp by"
    if not _integral(tensor) or kind in ("set", "expression"):
        return None
    if tensor.dtype == torch.bool:
        return f"{name} is a bool tensor: set it to 0 or 1, or write an expression"
    if tensor.dtype == torch.uint64 and kind == "clamp":  # (int64 holds no value past 2**63)
        return f"{name} is uint64, which torch cannot clamp: write an expression"
    if any(v is not None and not float(v).is_integer() for v in numbers):
        return f"{name} is {dtype}: {kind} by whole numbers only"
    return None


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


def _replay_line(target: str, kind: str, value: float | None, low: float | None, high: float | None,
                 expression: str | None, dtype: torch.dtype) -> str:  # fmt: skip
    """The line that repeats :func:`_apply` on ``target``, a tensor of ``dtype``."""
    if kind == "expression":
        return f"{target}.copy_(expression({expression!r}, {target}))"
    if not (dtype.is_floating_point or dtype.is_complex):  # whole numbers, as _apply casts them
        value, low, high = (None if v is None else int(v) for v in (value, low, high))
    if kind == "add":
        op = f"add_({format_value(value)})"
    elif kind == "multiply":
        op = f"mul_({format_value(value)})"
    elif kind == "set":
        op = f"fill_({format_value(value)})"
    else:
        op = f"clamp_(min={format_value(low)}, max={format_value(high)})"
    wider = computed_in(dtype)
    if wider is None:
        return f"{target}.{op}"
    return f"{target}.copy_({target}.to({wider}).{op})"  # (torch has no kernel for the dtype itself)


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
            [f"# {text}"] + [_replay_line(f"T({n!r})", kind, value, low, high, expression, live[n].dtype) for n in canonical]
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
        refusal = _refusal(name, tensor, kind, (value, low, high))
        if refusal is not None:
            raise ValueEditError(f"{kind}: {refusal}")
    return ValueEditCommand(session, names, kind, value, low, high, expression)
