"""The restricted evaluator for value-edit expressions."""

from __future__ import annotations

import pytest
import torch

from paramscope.core.edit.expressions import ExpressionError, compile_expression


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x * 2 + 1", [-1.0, 1.0, 3.0, 21.0]),
        ("-x", [1.0, 0.0, -1.0, -10.0]),
        ("x ** 2 % 3", [1.0, 0.0, 1.0, 1.0]),
        ("abs(x) >= 5", [0.0, 0.0, 0.0, 1.0]),
        ("where(abs(x) >= 5, x, 0)", [0.0, 0.0, 0.0, 10.0]),
        ("clamp(x, -0.5, 2)", [-0.5, 0.0, 1.0, 2.0]),
        ("sign(x) * sqrt(abs(x))", [-1.0, 0.0, 1.0, 10.0**0.5]),
        ("maximum(x, 0) / 2", [0.0, 0.0, 0.5, 5.0]),
        ("0 * x + pi", [torch.pi] * 4),
        ("3", [3.0] * 4),
    ],
)
def test_allowed_expressions_evaluate_elementwise(text, expected):
    x = torch.tensor([-1.0, 0.0, 1.0, 10.0])
    result = compile_expression(text).evaluate(x)
    assert result.shape == x.shape and result.dtype == x.dtype
    assert torch.allclose(result, torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('echo hacked')", "attribute access"),
        ("x.data", "attribute access"),
        ("x.__class__", "attribute access"),
        ("open('/etc/passwd')", "only these functions are allowed"),
        ("eval('1')", "only these functions are allowed"),
        ("y + 1", "unknown name 'y'"),
        ("x[0]", "Subscript"),
        ("[x for x in ()]", "ListComp"),
        ("lambda: 0", "Lambda"),
        ("'text'", "only numbers"),
        ("clamp(x, 1)", "takes 3 argument(s)"),
        ("abs(x=1)", "by position"),
        ("1 < x < 2", "comparisons must be simple"),
        ("x +", "not a valid expression"),
        ("", "empty expression"),
    ],
)
def test_disallowed_expressions_are_refused_before_running(text, message):
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_runtime_failures_become_expression_errors():
    with pytest.raises(ExpressionError, match="where"):
        compile_expression("where(x, 1, 2)").evaluate(torch.ones(2))  # condition must be boolean
