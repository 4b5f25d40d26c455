"""Hardening: typed text is never run as Python, and warnings from paramscope code fail the tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from paramscope.core.backward.input_specs import parse_input_spec
from paramscope.core.edit.expressions import compile_expression
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.rule_parse import parse_rule

MARKER = "PARAMSCOPE_MARKER"

ATTACKS = [
    f"__import__('os').system('touch {MARKER}')",
    f"__import__('os').system('touch {MARKER}') or x",
    "().__class__.__bases__[0].__subclasses__()",
    "x.__class__.__bases__[0].__subclasses__()",
    f"(lambda: __import__('os').system('touch {MARKER}'))()",
    "lambda x: x",
    "x.data",
    "x.numpy()",
    f"open('{MARKER}', 'w')",
    f"exec(\"open('{MARKER}', 'w')\")",
    f"eval(\"open('{MARKER}', 'w')\")",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "globals()",
    "x if __import__('os') else x",
    "abs.__self__",
    f"(y := __import__('os').system('touch {MARKER}'))",
    "f'{x}'",
]


@pytest.fixture
def in_tmp(tmp_path: Path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(cwd)
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("text", ATTACKS)
def test_expressions_are_not_eval(text: str, in_tmp: Path) -> None:
    with pytest.raises(ParamscopeError):
        compile_expression(text).evaluate(torch.ones(2))
    assert not (in_tmp / MARKER).exists()


@pytest.mark.parametrize("text", ATTACKS)
def test_rule_arguments_are_not_eval(text: str, in_tmp: Path) -> None:
    for rule in (f"*.weight=normal(std={text})", f"*.weight=constant({text})", f"*=uniform(a=0, b={text})"):
        with pytest.raises(ParamscopeError):
            parse_rule(rule)
    assert not (in_tmp / MARKER).exists()


@pytest.mark.parametrize("text", ATTACKS)
def test_input_specs_are_not_eval(text: str, in_tmp: Path) -> None:
    for spec in (f"rand({text})", f"randint(2, high={text})", f"rand(2, dtype={text})"):
        with pytest.raises(ParamscopeError):
            parse_input_spec(spec).make(seed=0)
    assert not (in_tmp / MARKER).exists()


@pytest.mark.parametrize("text", ["9**9**9", "x ** 9 ** 9 ** 9", "2 ** 10000000", "(x + 1) ** 100000000"])
def test_huge_exponents_finish_at_once(text: str) -> None:
    """Powers are tensor maths in the tensor's dtype: they overflow to inf, never build big ints."""
    for x in (torch.ones(3), torch.arange(3), torch.ones(2, dtype=torch.float16)):
        try:
            result = compile_expression(text).evaluate(x)
        except ParamscopeError as exc:  # e.g. a power that does not fit float16: said, not hung
            assert "overflow" in str(exc)
        else:
            assert result.shape == x.shape


@pytest.mark.parametrize("category", [UserWarning, DeprecationWarning, RuntimeWarning])
def test_a_warning_from_paramscope_code_fails_the_tests(category: type[Warning]) -> None:
    """pyproject's filterwarnings turns these warnings, raised in paramscope.* modules, into errors."""
    code = compile(f"import warnings\nwarnings.warn('paramscope warned', {category.__name__})", "<p>", "exec")
    with pytest.raises(category, match="paramscope warned"):
        exec(code, {"__name__": "paramscope.core.some_module"})  # noqa: S102
    with pytest.warns(category):  # raised by other code it stays a warning
        exec(code, {"__name__": "elsewhere.module"})  # noqa: S102


def test_statistics_of_a_lazy_model_note_the_uninitialized_parameters() -> None:
    """demo:lazy once made the statistics worker fail (numel() of an UninitializedParameter)."""
    from paramscope.core.model.model_statistics import compute_model_statistics
    from paramscope.core.model.report import build_report
    from paramscope.core.sources.demos import build_demo

    model = build_demo("lazy")
    summaries = compute_model_statistics(model, build_report(model))
    lazy = [s for s in summaries.values() if not s.stats.has_data]
    assert lazy and all("uninitialized" in (s.stats.note or "") for s in lazy)
