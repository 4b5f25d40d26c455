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
    tensor_summary,
)
from paramscope.core.tasks import TaskState, ensure_state


@dataclass(frozen=True)
class TensorSummary:
    stats: TensorStats
    histogram: Histogram


def summarize(tensor: torch.Tensor, bins: int = DEFAULT_BINS, state: TaskState | None = None) -> TensorSummary:
    """Statistics and histogram of one tensor."""
    stats, histogram = tensor_summary(tensor, bins=bins, state=state)  # two reads, not three
    return TensorSummary(stats, histogram)


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
    bins: int = DEFAULT_BINS,
    loader: Callable[[str], torch.Tensor] | None = None,
) -> dict[str, TensorSummary]:
    """Summaries of ``names`` (default: every parameter and buffer), with progress by bytes.

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
        with torch.no_grad():
            results[name] = summarize(tensor, bins, state)
        done += sizes[name]
    state.progress(1.0, "done")
    return results
