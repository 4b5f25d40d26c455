"""What the Python API reads from a Session: the selection, whether the model is busy, grad norms."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paramscope.core.backward.backward import BackwardRequest, run
from paramscope.core.backward.gradient_norms import compute_grad_norms, grad_norm, norms_from_result
from paramscope.core.edit.commands import TensorEditCommand
from paramscope.core.edit.session import Session
from paramscope.core.model.heatmap import heatmap_of
from paramscope.core.sources.sources import open_source


def test_selection_is_the_sessions_and_listeners_hear_only_changes() -> None:
    session = Session(open_source("demo:shared"))
    heard: list[tuple[str, object]] = []
    session.add_selection_listener(lambda what, value: heard.append((what, value)))
    assert (session.selected_module, session.selected_tensor, session.selected_group) == ("", None, -1)
    assert session.select_tensor("1.weight")  # an alias: kept as the canonical name
    assert session.selected_tensor == "0.weight"
    assert not session.select_tensor("0.weight")  # the same tensor: no news
    assert session.select_module("1") and session.select_tied_group(0)
    assert heard == [("tensor", "0.weight"), ("module", "1"), ("group", 0)]


def test_busy_is_the_sessions_and_joins_what_is_running() -> None:
    session = Session(open_source("demo:mlp"))
    heard: list[tuple[bool, str]] = []
    session.add_busy_listener(lambda busy, what: heard.append((busy, what)))
    assert session.model_busy is None
    assert session.set_busy(True, "files") and session.set_busy(True, "backward")
    assert not session.set_busy(True, "files")  # already busy with it
    assert session.model_busy == "backward, files" and session.busy_tasks == {"backward", "files"}
    session.set_busy(False, "backward")
    session.set_busy(False, "backward")
    assert session.model_busy == "files"
    assert heard == [(True, "files"), (True, "backward"), (False, "backward")]


def _nan_backward(session: Session):
    inputs = torch.tensor([[float("nan"), 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    return run(BackwardRequest(session.opened, inputs))


def test_a_backwards_norms_equal_the_norm_of_grad_nan_included() -> None:
    session = Session(open_source("demo:mlp"))
    result = run(BackwardRequest(session.opened, "rand(2, 4)"))
    norms = norms_from_result(result)
    for name in session.report.parameters:
        expected = float(session.tensor(name).grad.double().norm())
        assert math.isclose(norms[name], expected, rel_tol=1e-9), name
        assert grad_norm(session.tensor(name)) == expected
    nan = norms_from_result(_nan_backward(session))
    assert math.isnan(nan["0.weight"]) and math.isnan(grad_norm(session.tensor("0.weight")))


@pytest.mark.parametrize("magnitude", [1e200, 1e-200, 3.0])
def test_a_gradient_norm_past_float64s_squares_is_the_true_one(magnitude: float) -> None:
    """torch's norm squares without scaling: a gradient of 1e200s read Inf, of 1e-200s read 0,
    where a backward's statistics (the same column) gave the true norm."""
    from paramscope.core.backward.gradient_norms import norm_of_grad, norm_of_stats
    from paramscope.core.model.tensor_stats import tensor_stats

    grad = torch.tensor([magnitude, -magnitude, magnitude, 0.0], dtype=torch.float64)
    true = magnitude * math.sqrt(3.0)
    assert math.isclose(norm_of_grad(grad), true, rel_tol=1e-12)
    assert math.isclose(norm_of_grad(grad), norm_of_stats(tensor_stats(grad)), rel_tol=1e-12)  # both ways agree
    assert math.isinf(norm_of_grad(torch.tensor([magnitude, math.inf])))
    assert math.isnan(norm_of_grad(torch.tensor([magnitude, math.nan])))
    assert norm_of_grad(torch.zeros(3)) == 0.0


def test_stale_norms_are_dropped_and_an_edit_forgets_only_what_it_may_have_changed() -> None:
    session = Session(open_source("demo:mlp"))
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert session.grad_norms == dict.fromkeys(names) and not session.missing_grad_norms()  # no .grad: known on opening
    session.forget_grad_norms()
    assert session.missing_grad_norms() == names
    version = session.grad_norms_version
    measured = compute_grad_norms({n: session.tensor(n).grad for n in session.missing_grad_norms()})
    assert measured == dict.fromkeys(measured)  # no .grad yet: None each
    result = run(BackwardRequest(session.opened, "rand(2, 4)"))
    session.replace_grad_norms(norms_from_result(result))
    assert not session.store_grad_norms(measured, version)  # measured before the backward: stale
    assert session.grad_norms["0.weight"] is not None and not session.missing_grad_norms()
    weight = session.tensor("0.weight")
    weight.grad = None
    session.execute(TensorEditCommand("zero", [("0.weight", weight)], weight.data.zero_))
    assert session.grad_norms["0.weight"] is None  # no .grad: known at once
    bias = session.tensor("2.bias")
    session.execute(TensorEditCommand("zero", [("2.bias", bias)], bias.data.zero_))
    assert session.missing_grad_norms() == ["2.bias"]  # measured again, in a worker
    assert session.store_grad_norms({"2.bias": 1.0}, session.grad_norms_version)
    assert session.grad_norms["2.bias"] == 1.0


def test_heatmap_of_reduces_and_explains() -> None:
    heatmap = heatmap_of("w", torch.ones(1030, 3))
    assert heatmap.factor == 3 and heatmap.array.shape == (344, 1) and "downsampled 3×" in heatmap.title
    assert "needs 2 or more dimensions" in heatmap_of("b", torch.ones(3)).message
    assert "shape only" in heatmap_of("m", torch.empty(3, 3, device="meta")).message
    conv = heatmap_of("c", nn.Conv2d(2, 4, 3).weight)
    assert conv.shape == (4, 18) and conv.flattened and "flattened" in conv.title
    nan = torch.zeros(2, 2)
    nan[0, 0] = float("nan")
    assert heatmap_of("n", nan).nonfinite == 1

