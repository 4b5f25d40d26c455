"""Statistics and histograms of every tensor of a model, as a cancellable task.

``compute_model_statistics(model, report, state)`` is the ``run(inputs, state)`` function a GUI
worker calls; it is plain Python and is tested without an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from paramscope.core.report import ModelReport
from paramscope.core.stats import (
    DEFAULT_BINS,
    Histogram,
    TensorStats,
    _empty_histogram,
    tensor_histogram,
    tensor_stats,
    tensor_summary,
)
from paramscope.core.tasks import TaskState, ensure_state


@dataclass(frozen=True)
class TensorSummary:
    stats: TensorStats
    histogram: Histogram


MIN_AUTO_BINS = 8
# Integer tensors spanning at most this many values get one bar per value.
MAX_INTEGER_BARS = DEFAULT_BINS


def auto_bins(numel: int) -> int:
    """Bars for ``numel`` values: about sqrt(numel) within [8, DEFAULT_BINS].

    A 12-element weight in 64 bins is a row of spikes; sqrt keeps small tensors readable.

    Example:
        >>> auto_bins(12), auto_bins(100), auto_bins(10**6)
        (8, 10, 64)
    """
    return int(min(DEFAULT_BINS, max(MIN_AUTO_BINS, round(numel**0.5))))


def summarize(tensor: torch.Tensor, bins: int | None = None, state: TaskState | None = None) -> TensorSummary:
    """Statistics and histogram of one tensor.

    Args:
        tensor: any tensor.
        bins: number of bars; None picks them: one per value for integer and bool tensors whose
            values span at most 64 integers, else :func:`auto_bins` of the element count.
        state: optional progress/cancel state.
    """
    if bins is None:
        if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
            stats = tensor_stats(tensor, state=state)
            if stats.has_data and stats.min is not None and stats.max is not None:
                lo, hi = int(stats.min), int(stats.max)
                if hi - lo + 1 <= MAX_INTEGER_BARS:
                    histogram = tensor_histogram(
                        tensor, bins=hi - lo + 1, value_range=(lo - 0.5, hi + 0.5), stats=stats, state=state
                    )
                    return TensorSummary(stats, histogram)
        # a lazy (uninitialized) parameter has no numel yet; tensor_summary notes why it is empty
        lazy = isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin)
        bins = MIN_AUTO_BINS if lazy else auto_bins(tensor.numel())
    stats, histogram = tensor_summary(tensor, bins=bins, state=state)  # two reads, not three
    return TensorSummary(stats, histogram)


def unavailable_summary(tensor: torch.Tensor, note: str, bins: int | None = None) -> TensorSummary:
    """A summary without values that says why (``note``) in both stats and histogram."""
    stats = TensorStats(numel=tensor.numel(), has_data=False, note=note)
    return TensorSummary(stats, _empty_histogram(bins or MIN_AUTO_BINS, note=note))


def named_tensors(model: nn.Module, report: ModelReport) -> dict[str, torch.Tensor]:
    """Each distinct parameter and buffer of ``model`` under its canonical name."""
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.named_parameters():
        tensors[report.alias_to_name.get(name, name)] = tensor
    for name, tensor in model.named_buffers():
        tensors.setdefault(report.alias_to_name.get(name, name), tensor)
    return tensors


def compute_model_statistics(
    model: nn.Module,
    report: ModelReport,
    state: TaskState | None = None,
    names: Iterable[str] | None = None,
    bins: int | None = None,
    loader: Callable[[str], torch.Tensor] | None = None,
) -> dict[str, TensorSummary]:
    """Summaries of ``names`` (default: every parameter and buffer), with progress by bytes.

    ``bins=None`` picks the bars per tensor (see :func:`summarize`).

    ``loader`` gives the values of shape-only (meta) placeholders of a lazily opened source;
    each is loaded, summarized and released in turn.
    """
    state = ensure_state(state)
    tensors = named_tensors(model, report)
    wanted = list(tensors) if names is None else [report.alias_to_name.get(n, n) for n in names]
    sizes = {n: max(1, report.tensor(n).nbytes) for n in wanted}
    total = sum(sizes.values()) or 1
    done = 0
    results: dict[str, TensorSummary] = {}
    for name in wanted:
        state.progress(done / total, name)
        tensor = tensors[name]
        if tensor.device.type == "meta" and loader is not None:
            tensor = loader(name)
        try:
            with torch.no_grad():
                results[name] = summarize(tensor, bins, state)
        except (MemoryError, torch.OutOfMemoryError) as exc:
            # one huge tensor must not cost the statistics of all the others
            results[name] = unavailable_summary(tensor, f"out of memory computing statistics ({type(exc).__name__})", bins)
        done += sizes[name]
    state.progress(1.0, "done")
    return results
