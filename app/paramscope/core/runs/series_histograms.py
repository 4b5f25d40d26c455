"""Histograms of one tensor (or one module's tensors) at several checkpoints of a run, on shared bins.

The Series view draws a step over the one before it (before / after), so every histogram is
binned on the same edges: from the smallest to the largest finite value found at any of the
steps. A module's tensors are binned one at a time and their counts added, so no concatenated
copy of the module is ever made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from paramscope.core.files.statedict import Checkpoint
from paramscope.core.model.tensor_stats import (
    DEFAULT_BINS,
    Histogram,
    TensorStats,
    tensor_histogram,
    tensor_stats,
)
from paramscope.core.runs.series import _values, open_checkpoint
from paramscope.core.tasks import TaskState, ensure_state


def shared_range(stats: Sequence[TensorStats]) -> tuple[float, float]:
    """The smallest and largest finite value over ``stats``; (0, 1) when none has any."""
    lows = [s.min for s in stats if s.min is not None]
    highs = [s.max for s in stats if s.max is not None]
    if not lows or not highs:
        return 0.0, 1.0
    return min(lows), max(highs)


def _added(parts: Sequence[Histogram]) -> Histogram:
    """The sum of histograms that share their edges (one module's tensors)."""
    if len(parts) == 1:
        return parts[0]
    notes = sorted({p.note for p in parts if p.note})
    return Histogram(
        parts[0].edges,
        np.sum([p.counts for p in parts], axis=0),
        nan=sum(p.nan for p in parts),
        posinf=sum(p.posinf for p in parts),
        neginf=sum(p.neginf for p in parts),
        note="; ".join(notes) or None,
    )


def step_histograms(
    sources: Sequence[str],
    names: Sequence[str],
    *,
    trust: bool = False,
    bins: int = DEFAULT_BINS,
    state: TaskState | None = None,
    opener: Callable[[str, bool], Checkpoint] = open_checkpoint,
) -> list[Histogram | None]:
    """One histogram per checkpoint in ``sources`` of the tensors ``names`` (added up), all on one
    set of edges; None for a checkpoint holding none of them.

    Example:
        >>> before, after = step_histograms(["step-10.safetensors", "step-20.safetensors"], ["fc.weight"])  # doctest: +SKIP
    """
    state = ensure_state(state)
    found: list[list[torch.Tensor]] = []
    for i, source in enumerate(sources):
        state.progress(0.4 * i / max(1, len(sources)), f"reading {len(names)} tensor(s) at step {i + 1}")
        checkpoint = opener(source, trust)
        found.append([t for t in (_values(checkpoint, name) for name in names) if t is not None])
    stats = {id(t): tensor_stats(t, state) for tensors in found for t in tensors}
    value_range = shared_range(list(stats.values()))
    out: list[Histogram | None] = []
    for i, tensors in enumerate(found):
        state.progress(0.5 + 0.5 * i / max(1, len(found)), "binning")
        parts = [tensor_histogram(t, bins, value_range, stats[id(t)], state) for t in tensors]
        out.append(_added(parts) if parts else None)
    state.progress(1.0, "done")
    return out
