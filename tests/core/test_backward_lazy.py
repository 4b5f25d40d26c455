"""Gradient summaries are computed after backward, when first read: the same numbers as reading
the gradients at once, never numbers of gradients changed since."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from small_models import TiedEmbedding
from torch import nn

from paramscope.core.backward import grad_summary
from paramscope.core.backward.backward import BackwardRequest, run, run_backward
from paramscope.core.backward.backward_errors import StaleGradientError
from paramscope.core.backward.inputs import default_input
from paramscope.core.backward.signal import _std
from paramscope.core.model import kernels
from paramscope.core.model.tensor_stats import tensor_stats, tensor_summary
from paramscope.core.sources.demos import build_demo


def test_run_backward_returns_before_any_summary_is_computed(monkeypatch):
    calls: list[torch.Size] = []

    def counting(tensor, *args, **kwargs):
        calls.append(tensor.shape)
        return tensor_summary(tensor, *args, **kwargs)

    monkeypatch.setattr(grad_summary, "tensor_summary", counting)
    model = build_demo("mlp")
    result = run_backward(model, "rand(2, 4)")
    assert all(p.grad is not None for p in model.parameters())  # gradients usable already
    assert calls == [] and not any(g.summarized for g in result.parameters.values())
    assert result.parameters["0.weight"].grad is not None
    assert calls == [model[0].weight.shape]
    _ = result.diagnostics
    assert len(calls) == len(result.parameters)  # diagnostics read every summary, once each
    _ = result.to_dict(histogram=True)
    assert len(calls) == len(result.parameters)


@pytest.mark.parametrize("demo", ["mlp", "cnn", "tiny_lm", "shared"])
def test_summaries_read_later_equal_the_gradients_read_at_once(demo):
    model = build_demo(demo)
    result = run_backward(model, default_input(model), bins=16)
    for name, param in model.named_parameters():
        entry = result.parameters[name]
        stats, histogram = tensor_summary(param.grad, bins=16)
        assert entry.grad == stats, name
        assert entry.histogram.to_dict() == histogram.to_dict(), name
        assert entry.weight_norm == tensor_stats(param.detach()).norm, name  # one L2 norm
        if param.numel() <= grad_summary.VALUES_LIMIT:
            assert torch.equal(entry.values, param.grad), name


def test_worker_run_and_lazy_reads_give_the_same_report():
    torch.manual_seed(3)
    first = build_demo("tiny_lm")
    second = build_demo("tiny_lm")
    second.load_state_dict(first.state_dict())
    spec = default_input(first)
    summarized = run(BackwardRequest(first, spec))
    assert all(g.summarized for g in summarized.parameters.values())
    lazy = run_backward(second, spec)
    assert lazy.to_dict(histogram=True) == summarized.to_dict(histogram=True)


def test_dead_rows_read_later_are_the_all_zero_rows():
    model = build_demo("mlp")
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([10.0, -100.0, -100.0]))  # units 1 and 2 never fire
    result = run_backward(model, "rand(8, 4)")
    grad = model[0].weight.grad
    assert result.parameters["0.weight"].dead_rows == tuple(
        int(i) for i in torch.nonzero((grad == 0).all(dim=1)).reshape(-1)
    )
    assert result.parameters["0.weight"].dead_rows == (1, 2)


# --- per-use parts: what each use contributed, without copying the gradients ------------------


def per_use_reference(model: TiedEmbedding, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each use's gradient from a copy of the weight of its own."""
    w_embed = model.embed.weight.detach().clone().requires_grad_()
    w_head = model.embed.weight.detach().clone().requires_grad_()
    out = F.linear(torch.tanh(F.embedding(ids, w_embed)), w_head)
    g_embed, g_head = torch.autograd.grad(out.pow(2).sum(), (w_embed, w_head))
    return g_embed, g_head


def test_tied_parts_equal_each_uses_own_gradient():
    torch.manual_seed(0)
    model = TiedEmbedding()
    ids = torch.tensor([[0, 3, 3, 6, 1]])
    g_embed, g_head = per_use_reference(model, ids)
    result = run_backward(model, ids, "l2")
    parts = result.parameters["embed.weight"].parts
    assert [p.module for p in parts] == ["embed", "head"]
    assert torch.allclose(parts[0].values, g_embed, rtol=0, atol=1e-6)
    assert torch.allclose(parts[1].values, g_head, rtol=0, atol=1e-6)
    assert parts[0].stats.norm == pytest.approx(float(g_embed.double().norm()), rel=1e-5)
    assert torch.allclose(model.embed.weight.grad, g_embed + g_head, rtol=0, atol=1e-6)


class ThreeCalls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.fc(torch.tanh(self.fc(x)))))


def test_a_module_called_three_times_gives_three_parts_that_match_each_call():
    torch.manual_seed(1)
    model = ThreeCalls()
    x = torch.rand(4, 3)
    weights = [model.fc.weight.detach().clone().requires_grad_() for _ in range(3)]
    h = x
    for i, w in enumerate(weights):
        h = F.linear(h, w, model.fc.bias.detach())
        if i < 2:
            h = torch.tanh(h)
    expected = torch.autograd.grad(h.sum(), weights)
    result = run_backward(model, x)
    parts = result.parameters["fc.weight"].parts
    assert [p.module for p in parts] == ["fc", "fc (call 2)", "fc (call 3)"]
    for part, reference in zip(parts, expected, strict=True):
        assert torch.allclose(part.values, reference, rtol=0, atol=1e-6), part.module


def test_parts_read_later_do_not_hold_or_change_the_gradient():
    model = TiedEmbedding()
    ids = torch.tensor([[1, 2]])
    result = run_backward(model, ids)
    grad = model.embed.weight.grad
    before = grad.clone()
    _ = result.parameters["embed.weight"].parts
    assert model.embed.weight.grad is grad and torch.equal(grad, before)


# --- a result never describes gradients changed after its backward ------------------------------


def test_a_gradient_changed_in_place_before_reading_is_refused():
    model = build_demo("mlp")
    result = run_backward(model, "rand(2, 4)")
    with torch.no_grad():
        model[0].weight.grad.mul_(2)
    with pytest.raises(StaleGradientError, match=r"0\.weight: the gradient or weight changed"):
        _ = result.parameters["0.weight"].grad
    with pytest.raises(StaleGradientError):  # and stays refused
        _ = result.parameters["0.weight"].histogram
    assert result.parameters["0.bias"].grad is not None  # the others are as backward left them
    with pytest.raises(StaleGradientError):
        _ = result.diagnostics


def test_a_weight_changed_in_place_before_reading_is_refused():
    model = build_demo("mlp")
    result = run_backward(model, "rand(2, 4)")
    with torch.no_grad():
        model[2].weight.add_(1.0)
    with pytest.raises(StaleGradientError):
        _ = result.parameters["2.weight"].weight_norm


def test_summarize_first_keeps_the_numbers_of_that_backward():
    model = build_demo("mlp")
    result = run_backward(model, "rand(2, 4)").summarize()
    norm = float(model[0].weight.grad.double().norm())
    with torch.no_grad():
        model[0].weight.grad.mul_(2)
    assert result.parameters["0.weight"].grad.norm == pytest.approx(norm)


def test_an_accumulating_run_summarizes_earlier_results_first():
    model = build_demo("mlp")
    first = run_backward(model, "rand(2, 4)")
    norms = {n: float(p.grad.double().norm()) for n, p in model.named_parameters()}
    assert not first.parameters["0.weight"].summarized
    run_backward(model, "rand(2, 4)", accumulate=True)  # adds into the same tensors in place
    for name, norm in norms.items():
        assert first.parameters[name].grad.norm == pytest.approx(norm), name


def test_a_dropped_result_frees_what_it_held_at_once():
    model = build_demo("tiny_lm")
    before = len(grad_summary._PENDING)
    result = run_backward(model, default_input(model))
    assert len(grad_summary._PENDING) == before + len(result.parameters)
    del result  # no reference cycle: freed without waiting for the garbage collector
    assert len(grad_summary._PENDING) == before


# --- signal propagation's std ------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(1000) * 3 + 1,
        lambda: torch.randn(300, 400) * 2 - 0.5,  # large enough for the compiled loops
        lambda: torch.randn(50, 40).t(),  # not contiguous
        lambda: torch.ones(4, 1).expand(4, 5),  # a sum loss's gradient: broadcast ones
        lambda: torch.randn(3, 1).expand(3, 6),  # broadcast, not constant
        lambda: torch.full((10,), 7.0),  # constant
        lambda: torch.randn(100) + 1000.0,  # mean >> std: the exact path
        lambda: torch.tensor([1.0, float("nan"), 3.0, float("inf"), 4.0]),
        lambda: torch.randn(64, dtype=torch.float64),
        lambda: torch.randn(64).half(),
        lambda: torch.tensor([2.5]),
        lambda: torch.empty(0),
    ],
)
@pytest.mark.parametrize("compiled", [False, True], ids=["torch", "compiled"])
def test_signal_std_equals_the_exact_statistics(make, compiled, monkeypatch):
    if compiled and not kernels.load():
        pytest.skip("the compiled statistics loops are not available")
    if not compiled:
        monkeypatch.setattr(kernels, "loaded", lambda: False)
    torch.manual_seed(0)
    tensor = make()
    exact = tensor_stats(tensor).std
    got = _std(tensor)
    if exact is None:
        assert got is None
    else:
        assert got == pytest.approx(exact, rel=1e-5, abs=1e-12)
