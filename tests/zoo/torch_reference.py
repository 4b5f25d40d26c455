"""What plain torch computes on the same model and input, to compare paramscope with."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from paramscope.core.backward.backward import run_backward, zero_grad
from paramscope.core.backward.grad_results import BackwardResult
from paramscope.core.backward.input_specs import InputSpec
from paramscope.core.model.model_statistics import compute_model_statistics
from paramscope.core.model.report import build_report


def check_backward(
    model: nn.Module, spec: InputSpec, loss_of: Callable[[object], torch.Tensor]
) -> BackwardResult:
    """paramscope's output, loss and every gradient equal a plain ``loss_of(model(...)).backward()``."""
    zero_grad(model)
    result = run_backward(model, spec, record_signal=False)
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    zero_grad(model)
    args, kwargs = spec.make_call(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        output = model(*args, **kwargs)
    loss = loss_of(output)
    loss.backward()
    theirs = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert result.loss == float(loss.detach())
    assert set(ours) == set(theirs) and theirs
    for name, grad in theirs.items():
        assert torch.equal(ours[name], grad), name
    assert {n for g in result.parameters.values() if g.received for n in g.aliases} >= set(theirs)
    zero_grad(model)
    return result


def check_structure(model: nn.Module) -> None:
    """Counts, ties and statistics equal what torch itself says."""
    report = build_report(model)
    assert report.unique_params == sum(p.numel() for p in model.parameters())
    assert report.total_params == sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert sorted(g.names for g in report.tied_groups if g.kind == "same parameter") == sorted(tied_names(model))
    assert [u.message for u in report.unregistered] == []
    summaries = compute_model_statistics(model, report)
    for name, param in model.named_parameters():
        stats = summaries[report.alias_to_name[name]].stats
        values = param.detach().double()
        assert stats.numel == param.numel()
        assert stats.min == float(values.min()) and stats.max == float(values.max())
        assert abs(stats.mean - float(values.mean())) <= 1e-9 * max(1.0, abs(float(values.mean())))


def tied_names(model: nn.Module) -> list[tuple[str, ...]]:
    """Groups of names torch gives one parameter (``named_parameters(remove_duplicate=False)``)."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [tuple(g) for g in groups.values() if len(g) > 1]
