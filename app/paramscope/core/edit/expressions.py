"""A restricted evaluator for value-edit expressions in ``x`` (``x * 2 + 1``, ``clamp(x, -1, 1)``).

The text is parsed with :mod:`ast` and only a whitelist of nodes is evaluated: numbers, ``x``,
``pi``/``e``, ``+ - * / // % **``, unary ``-``/``+``, comparisons, ``and``-free boolean masks via
``&``/``|``, and a few functions. No names, attributes, subscripts or imports: ``__import__('os')``
or ``x.data`` is an :class:`ExpressionError`, never run.

Example:
    >>> compile_expression("where(abs(x) >= 5, x, 0)").evaluate(torch.tensor([1.0, 7.0]))
    tensor([0., 7.])
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from paramscope.core.errors import ParamscopeError


class ExpressionError(ParamscopeError):
    """An expression that is not allowed or cannot be evaluated."""


def _t(value: Any, like: torch.Tensor) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=like.dtype)


# name -> (function, number of arguments)
FUNCTIONS: dict[str, tuple[Callable[..., torch.Tensor], int]] = {
    "abs": (torch.abs, 1),
    "sign": (torch.sign, 1),
    "sqrt": (torch.sqrt, 1),
    "exp": (torch.exp, 1),
    "log": (torch.log, 1),
    "tanh": (torch.tanh, 1),
    "sin": (torch.sin, 1),
    "cos": (torch.cos, 1),
    "sigmoid": (torch.sigmoid, 1),
    "relu": (torch.relu, 1),
    "round": (torch.round, 1),
    "floor": (torch.floor, 1),
    "ceil": (torch.ceil, 1),
    "clamp": (lambda x, lo, hi: torch.clamp(x, lo, hi), 3),
    "where": (torch.where, 3),
    "minimum": (torch.minimum, 2),
    "maximum": (torch.maximum, 2),
}

CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_LENGTH = 1000  # longer text is not typed by hand; deep nesting would exhaust Python's parser

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access ({ast.unparse(node)}) is not allowed"
    if isinstance(node, ast.Call):
        return f"only these functions are allowed: {', '.join(FUNCTIONS)}"
    if isinstance(node, ast.Name):
        return f"unknown name {node.id!r}: use x, pi, e and the functions {', '.join(FUNCTIONS)}"
    return f"{type(node).__name__} ({ast.unparse(node)}) is not allowed in an expression"


def _check(node: ast.AST) -> None:
    """Reject anything outside the whitelist before evaluating anything."""
    if isinstance(node, ast.Expression):
        _check(node.body)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ExpressionError(f"{node.value!r}: only numbers are allowed as constants")
    elif isinstance(node, ast.Name):
        if node.id != "x" and node.id not in CONSTANTS:
            raise ExpressionError(_describe(node))
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ExpressionError(_describe(node))
        _check(node.left)
        _check(node.right)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise ExpressionError(_describe(node))
        _check(node.operand)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
            raise ExpressionError("comparisons must be simple, like abs(x) >= 5")
        _check(node.left)
        _check(node.comparators[0])
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ExpressionError(_describe(node.func if isinstance(node.func, ast.Attribute) else node))
        if node.keywords:
            raise ExpressionError(f"{node.func.id}(): give arguments by position")
        arity = FUNCTIONS[node.func.id][1]
        if len(node.args) != arity:
            raise ExpressionError(f"{node.func.id}() takes {arity} argument(s), got {len(node.args)}")
        for arg in node.args:
            _check(arg)
    else:
        raise ExpressionError(_describe(node))


@dataclass(frozen=True)
class Expression:
    """A checked expression in ``x``; :meth:`evaluate` gives a tensor shaped like ``x``."""

    text: str
    tree: ast.Expression

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        try:
            with torch.no_grad():
                result = self._eval(self.tree.body, x)
                result = _t(result, x)
                return torch.broadcast_to(result, x.shape).to(x.dtype)
        except ExpressionError:
            raise
        except (RuntimeError, TypeError, ValueError, ZeroDivisionError, OverflowError, RecursionError) as exc:
            raise ExpressionError(f"{self.text!r}: {type(exc).__name__}: {exc}") from exc

    def _eval(self, node: ast.AST, x: torch.Tensor) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return x if node.id == "x" else CONSTANTS[node.id]
        if isinstance(node, ast.BinOp):
            left, right = self._eval(node.left, x), self._eval(node.right, x)
            if not isinstance(left, torch.Tensor) and not isinstance(right, torch.Tensor):
                left = _t(left, x)  # keep scalar maths in the tensor's dtype semantics
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](self._eval(node.operand, x))
        if isinstance(node, ast.Compare):
            left = _t(self._eval(node.left, x), x)
            return _COMPARE[type(node.ops[0])](left, self._eval(node.comparators[0], x))
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            function, _ = FUNCTIONS[node.func.id]
            args = [_t(self._eval(a, x), x) for a in node.args]
            return function(*args)
        raise ExpressionError(_describe(node))  # unreachable after _check


def compile_expression(text: str) -> Expression:
    """Parse and check ``text``; :class:`ExpressionError` says what is not allowed.

    Example:
        >>> compile_expression("x * 2 + 1").evaluate(torch.ones(2))
        tensor([3., 3.])
    """
    source = text.strip()
    if not source:
        raise ExpressionError("empty expression: write something in x, e.g. x * 2 + 1")
    if len(source) > MAX_LENGTH:
        raise ExpressionError(f"expression of {len(source):,} characters: at most {MAX_LENGTH:,} are allowed")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{source!r}: not a valid expression ({exc.msg})") from exc
    except (ValueError, MemoryError, RecursionError) as exc:  # null bytes, nesting too deep for Python
        raise ExpressionError(f"{source!r}: not a valid expression ({type(exc).__name__})") from exc
    try:
        _check(tree)
    except ExpressionError as exc:
        raise ExpressionError(f"{source!r}: {exc}") from exc
    except RecursionError as exc:
        raise ExpressionError(f"{source!r}: nested too deeply") from exc
    return Expression(source, tree)
