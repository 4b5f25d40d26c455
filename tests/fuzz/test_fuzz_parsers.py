"""Fuzzing the text parsers: init rules, selectors, input specs and value-edit expressions.

Property: a correct result or a :class:`ParamscopeError` with a one-line message, never another
exception type and never a hang (each call runs under a wall-clock alarm).
"""

from __future__ import annotations

import math

import pytest
import torch
from fuzz_guard import assert_clean_outcome, no_hang
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paramscope.core.backward.input_specs import parse_input_spec
from paramscope.core.edit.expressions import compile_expression
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.rule_parse import parse_rule
from paramscope.core.init.selectors import parse_selector

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tokens(*words: str, max_size: int = 14) -> st.SearchStrategy[str]:
    """Text glued from grammar-ish tokens and arbitrary characters: reaches deep into the parser."""
    piece = st.one_of(st.sampled_from(words), st.text(max_size=3))
    return st.lists(piece, max_size=max_size).map("".join)


# --- value-edit expressions ----------------------------------------------------------------

EXPRESSION_TOKENS = (
    "x", "1", "2.5", "0", "9", "-1", "1e308", "1e999", "10000000000000000000000", " ", "-", "+",
    "*", "/", "//", "%", "**", "(", ")", ",", "abs(", "clamp(", "where(", "sqrt(", "log(", "exp(",
    "minimum(", "maximum(", "pi", "e", ">", "<=", "==", "!=", "&", "|", "x.", "__import__", "'a'",
    "[", "]", "lambda", ":", "not ", "and", "if", "else", "True", "None", "nan", "\x00", "\n",
)


def _check_expression(text: str) -> None:
    with no_hang():
        try:
            expression = compile_expression(text)
        except ParamscopeError as exc:
            assert_clean_outcome(exc)
            return
        for x in (torch.tensor([-1.5, 0.0, 2.0]), torch.tensor([-2, 0, 3]), torch.zeros(2, 2, dtype=torch.bfloat16)):
            try:
                result = expression.evaluate(x)
            except ParamscopeError as exc:
                assert_clean_outcome(exc)
            else:
                assert result.shape == x.shape and result.dtype == x.dtype


@FUZZ
@given(text=st.one_of(tokens(*EXPRESSION_TOKENS), st.text(max_size=30)))
def test_any_expression_compiles_and_evaluates_or_fails_cleanly(text: str) -> None:
    _check_expression(text)


EXPRESSION_REGRESSIONS = [
    "\x00",
    "x\x00",
    "-" * 100_000 + "x",  # MemoryError inside Python's parser
    "x" + "+x" * 100_000,  # RecursionError building the tree
    "(" * 300 + "x" + ")" * 300,
    "1" * 5000,  # int literal past Python's digit limit
    "9**9**9",
    "x**9**9**9",
    "2**10000000",
    "10000000000000000000000 * x",
    "1e308 * 10",
    "x // 0",
    "x % 0",
    "0 ** -1",
    "clamp(x, 1, x)",
    "where(x > 0, 1, 2)",
]


@pytest.mark.parametrize("text", EXPRESSION_REGRESSIONS, ids=lambda t: repr(t[:24]))
def test_expression_regressions(text: str) -> None:
    _check_expression(text)


def test_huge_exponent_gives_inf_not_a_hang() -> None:
    with no_hang():
        result = compile_expression("9**9**9 + x*0").evaluate(torch.zeros(3))
    assert torch.isinf(result).all()


# --- init rules and selectors ---------------------------------------------------------------

RULE_TOKENS = (
    "*", "*.weight", "re:", "^0\\.", "(", ")", "type:", "Linear", "weights", "biases", "=", "normal",
    "normal_", "uniform", "constant", "kaiming_normal_", "xavier_uniform", "trunc_normal", "default",
    "orthogonal", "sparse", "eye", "dirac", "zeros", "file.py:f", "os:system", "(", ")", ",",
    "std=", "mean=", "a=", "b=", "gain=", "val=", "mode=", "fan_in", "nonlinearity=", "'relu'",
    "sparsity=", "0", "1", "-1", "0.01", "1e999", "True", "None", "**k", "*a", "__import__('os')",
    "9**9**9", "1j", "b'x'", "[1]", "\x00", " ", "\n",
)


def _check_rule(text: str) -> None:
    with no_hang():
        try:
            rule = parse_rule(text)
        except ParamscopeError as exc:
            assert_clean_outcome(exc)
        else:
            for _, value in rule.kwargs:
                assert value is None or isinstance(value, int | float | str | bool)


@FUZZ
@given(text=st.one_of(tokens(*RULE_TOKENS), st.text(max_size=30)))
def test_any_rule_parses_or_fails_cleanly(text: str) -> None:
    _check_rule(text)


@FUZZ
@given(text=st.one_of(tokens("re:", "type:", "*", "[", "]", "(", "?", "\\", "weights", "{", "}"), st.text(max_size=20)))
def test_any_selector_parses_or_fails_cleanly(text: str) -> None:
    with no_hang():
        try:
            parse_selector(text)
        except ParamscopeError as exc:
            assert_clean_outcome(exc)


RULE_REGRESSIONS = [
    "*=normal(\x00)",
    "*=normal(std=" + "-" * 100_000 + "1)",  # MemoryError inside Python's parser
    "*=normal(std=" + "1" * 5000 + ")",
    "*=normal(" + "(" * 300 + "1" + ")" * 300 + ")",
    "*=constant(val=9**9**9)",
    "*=normal(std=__import__('os'))",
    "*=normal(*a)",
    "*=normal(**k)",
    "re:(==normal()",
    "*=normal(std=" + "x+" * 100_000 + "1)",
]


@pytest.mark.parametrize("text", RULE_REGRESSIONS, ids=lambda t: repr(t[:24]))
def test_rule_regressions(text: str) -> None:
    _check_rule(text)


def test_rule_with_a_call_after_the_arguments_is_refused() -> None:
    """``normal(std=1)(2)`` once parsed silently as ``normal(std=1, mean=2)``."""
    with pytest.raises(ParamscopeError):
        parse_rule("*=normal(std=1)(2)")


def test_rule_arguments_are_values() -> None:
    rule = parse_rule("*.weight=normal(0, std=1e-2)")
    assert dict(rule.kwargs) == {"mean": 0, "std": 0.01}


# --- input specs ------------------------------------------------------------------------------

INPUT_TOKENS = (
    "rand(", "randn(", "ones(", "zeros(", "randint(", "full(", ")", "(", ",", ";", " ", "2", "0",
    "-1", "4", "99999999999999999999999", "high=", "low=", "dtype=", "float16", "int64", "bool",
    "uint8", "torch.float64", "complex64", "=", "~", "~nobody_here/x.pt", "missing.pt", "/dev/null",
    "\x00", "2**70", "1e3",
)


def _check_input_spec(text: str) -> None:
    with no_hang():
        try:
            spec = parse_input_spec(text)
        except ParamscopeError as exc:
            assert_clean_outcome(exc)
            return
        try:
            tensors = spec.make(seed=0)
        except ParamscopeError as exc:
            assert_clean_outcome(exc)
        else:
            assert all(isinstance(t, torch.Tensor) for t in tensors)
            assert sum(math.prod(t.shape) for t in tensors) <= 1 << 28


@FUZZ
@given(text=st.one_of(tokens(*INPUT_TOKENS), st.text(max_size=30)))
@example(text="~\x00")  # expanduser raised ValueError ("embedded null byte")
def test_any_input_spec_parses_or_fails_cleanly(text: str) -> None:
    _check_input_spec(text)


INPUT_REGRESSIONS = [
    "rand(" + "9" * 5000 + ")",  # int() past Python's digit limit
    "randint(2, high=" + "9" * 5000 + ")",
    "randint(2, high=99999999999999999999999)",
    "randint(2, low=-99999999999999999999999, high=3)",
    "~nobody_here_at_all/x.pt",  # expanduser of an unknown user raised RuntimeError
    "rand(1)(",
    "rand(\x00)",
    "a\x00b",
    "/dev/null",
    "randint(1, high=300, dtype=uint8)",
    "randint(1, high=2, dtype=bool)",
    "randint(1, low=-1, high=2, dtype=uint8)",
    "ones(1, dtype=bool)",
]


@pytest.mark.parametrize("text", INPUT_REGRESSIONS, ids=lambda t: repr(t[:24]))
def test_input_spec_regressions(text: str) -> None:
    _check_input_spec(text)
