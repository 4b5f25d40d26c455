"""The L2 norm of each parameter's ``.grad``, as the parameter table's "grad norm" column shows it.

A backward already summarizes every gradient (in its worker): :func:`norms_from_result` reads
the norms from there, so nothing is computed again. Gradients that no backward of ours made (a
live model handed to ``explore()``, an edit that replaced a parameter) are measured by
:func:`compute_grad_norms`, in a worker. Either way the numbers are those of
``grad.double().norm()``: NaN when the gradient holds a NaN, Inf when it holds an Inf, and the
true norm where torch's squares would leave float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from paramscope.core.model.tensor_stats import TensorStats
from paramscope.core.tasks import TaskState, ensure_state

if TYPE_CHECKING:  # pragma: no cover
    from paramscope.core.backward.grad_results import BackwardResult


def grad_norm(tensor: torch.Tensor) -> float | None:
    """``float(tensor.grad.double().norm())``, or None without a gradient."""
    return norm_of_grad(tensor.grad)


def norm_of_grad(grad: torch.Tensor | None) -> float | None:
    """``float(grad.double().norm())`` (of the magnitudes when complex), or None for no gradient;
    where the squares leave float64 (values past ~1e154, or all below ~1e-154), the true norm,
    of the values divided by their largest magnitude, as the statistics compute it."""
    if grad is None:
        return None
    with torch.no_grad():
        values = grad.detach().to("cpu")
        if values.is_complex():
            values = values.abs()
        values = values.double()
        norm = float(values.norm())
        if (math.isinf(norm) or norm == 0.0) and values.numel() and bool(torch.isfinite(values).all()):
            largest = float(values.abs().max())
            if largest > 0.0:  # (torch's norm squares without scaling: 1e200 gave Inf, 1e-200 gave 0)
                norm = largest * float((values / largest).norm())
        return norm


def norm_of_stats(stats: TensorStats | None) -> float | None:
    """The norm :func:`grad_norm` gives, from a gradient's statistics (no tensor read)."""
    if stats is None:
        return None
    if stats.nan:
        return math.nan
    if stats.inf:
        return math.inf
    return stats.norm if stats.norm is not None else 0.0


def norms_from_result(result: BackwardResult) -> dict[str, float | None]:
    """The norms of the gradients ``result`` summarized (any it did not are left out)."""
    return {name: norm_of_stats(g.grad) for name, g in result.parameters.items() if g.summarized}


def compute_grad_norms(grads: Mapping[str, torch.Tensor | None], state: TaskState | None = None) -> dict[str, float | None]:
    """:func:`norm_of_grad` of each gradient, by name (runs in a worker; cancel between tensors).

    ``grads`` are the ``.grad`` tensors themselves, taken by the caller on the thread that owns
    the model: reading ``param.grad`` here while that thread sets it to None (Zero grad) crashed
    the process.
    """
    state = ensure_state(state)
    norms: dict[str, float | None] = {}
    for done, (name, grad) in enumerate(grads.items()):
        if grad is not None:
            state.progress(done / max(1, len(grads)), f"grad norm of {name}")
        norms[name] = norm_of_grad(grad)
    return norms
