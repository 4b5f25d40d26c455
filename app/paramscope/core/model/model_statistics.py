"""Statistics and histograms of every tensor of a model, as a cancellable task.

``compute_model_statistics(model, report, state)`` is the ``run(inputs, state)`` function a GUI
worker calls; it is plain Python and is tested without an event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from paramscope.core.errors import NotInFiles
from paramscope.core.model.report import ModelReport, _named, walk_modules
from paramscope.core.model.tensor_stats import (
    DEFAULT_BINS,
    Histogram,
    TensorStats,
    empty_histogram,
    prefer_compiled,
    tensor_histogram,
    tensor_stats,
    tensor_summary,
)
from paramscope.core.tasks import TaskState, ensure_state


@dataclass(frozen=True)
class TensorSummary:
    stats: TensorStats
    histogram: Histogram


# The statistics a table sorts by (attributes of TensorStats), and the key of one not known.
SORTABLE_STATS = ("mean", "std", "min", "max", "norm", "zero_fraction", "nan", "inf")
NO_NUMBER = -np.inf


@dataclass(frozen=True)
class StatColumns:
    """The sortable statistics of some summaries, one float64 array per statistic, by position
    (``report.order``; :data:`NO_NUMBER` where a summary has no such number), and which count
    NaN or Inf values.

    Made where the summaries are made (a worker): a view sorting 100,000 rows by a statistic then
    reads arrays, not 100,000 objects on the GUI thread.
    """

    positions: np.ndarray
    values: dict[str, np.ndarray]
    nonfinite: frozenset[str]  # the names whose summary counts NaN or Inf values


def stat_columns(
    order: Mapping[str, int], summaries: Mapping[str, TensorSummary], statistics: Iterable[str] = SORTABLE_STATS
) -> StatColumns:
    """:class:`StatColumns` (of ``statistics``) of the ``summaries`` whose name ``order`` places."""
    names = [name for name in summaries if name in order]
    positions = np.fromiter((order[name] for name in names), dtype=np.int64, count=len(names))
    stats = [summaries[name].stats for name in names]
    values = {}
    for attribute in statistics:
        numbers = (getattr(s, attribute) if s.has_data else None for s in stats)
        values[attribute] = np.fromiter((NO_NUMBER if v is None else v for v in numbers), dtype=np.float64, count=len(stats))
    nonfinite = frozenset(name for name, summary in zip(names, stats, strict=True) if summary.nonfinite)
    return StatColumns(positions, values, nonfinite)


# The note of a tensor a lazily built model has no values for (see NotInFiles).
NOT_IN_FILES = "no values: not in the files (the model computes it when built; built shape-only here)"
MIN_AUTO_BINS = 8
# Tensors up to this many elements are summarized many at a time (:func:`summarize_small`): one
# pass of per-tensor torch calls costs ~300 us, which for 100,000 tiny tensors was 30 s.
SMALL_ELEMENTS = 4096
# Elements handled per batch of small tensors (progress and cancel between batches).
BATCH_ELEMENTS = 1 << 20
# ... and tensors: ``torch.cat`` of a batch holds the GIL throughout (~1 us per tensor), and the
# window waits for it (a batch of 200,000 tiny tensors held it 0.2 s). The diff's batches too.
BATCH_TENSORS = 8192
_BATCHED_DTYPES = (torch.float32,)
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
    return TensorSummary(stats, empty_histogram(bins or MIN_AUTO_BINS, note=note))


def named_tensors(model: nn.Module, report: ModelReport) -> dict[str, torch.Tensor]:
    """Each distinct parameter and buffer of ``model`` under its canonical name."""
    tensors: dict[str, torch.Tensor] = {}
    aliases = report.alias_to_name
    walked = walk_modules(model)  # one loop, not torch's generator per level and per tensor
    for name, tensor in _named(walked, "_parameters"):
        tensors[aliases.get(name, name)] = tensor
    for name, tensor in _named(walked, "_buffers"):
        tensors.setdefault(aliases.get(name, name), tensor)
    return tensors


def batchable(tensor: torch.Tensor) -> bool:
    """Whether :func:`summarize_small` takes ``tensor``: small, dense float32 on the CPU."""
    return (
        not issubclass(type(tensor), torch.nn.parameter.UninitializedTensorMixin)  # no numel yet
        and tensor.dtype in _BATCHED_DTYPES
        and 0 < tensor.numel() <= SMALL_ELEMENTS
        and tensor.layout == torch.strided
        and tensor.device.type == "cpu"
    )


def summarize_small(
    tensors: list[torch.Tensor], bins: int | None = None
) -> list[TensorSummary | None]:
    """Summaries of many :func:`batchable` tensors by a few numpy passes over all of them at once.

    The same statistics and histogram as :func:`summarize` (edges from ``numpy.linspace``, counts
    by ``numpy.histogram``'s rule ``edges[i] <= x < edges[i+1]``); sums may differ in the last
    bits (another summation order). None for a tensor with NaN or Inf: :func:`summarize` it.
    """
    if not tensors:
        return []
    sizes = np.fromiter((t.numel() for t in tensors), dtype=np.int64, count=len(tensors))
    with torch.no_grad():  # (no graph: Parameters need no detach; 1-D ones no reshape)
        flat = torch.cat([t if t.dim() == 1 else t.reshape(-1) for t in tensors])
    x = flat.numpy().astype(np.float64)  # exact for float32
    starts = np.zeros(len(tensors), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    finite = np.logical_and.reduceat(np.isfinite(x), starts)
    lo = np.minimum.reduceat(x, starts)
    hi = np.maximum.reduceat(x, starts)
    lo = np.where(finite, lo, 0.0)
    hi = np.where(finite, hi, 0.0)
    seg = np.repeat(np.arange(len(tensors)), sizes)
    d = x - lo[seg]
    if not finite.all():
        d[~finite[seg]] = 0.0
    s1 = np.add.reduceat(d, starts)
    s2 = np.add.reduceat(d * d, starts)
    constant = lo == hi
    s1[constant] = 0.0  # as the single-tensor pass: a constant is never read for its moments
    s2[constant] = 0.0
    zeros = np.add.reduceat((x == 0.0).astype(np.int64), starts)
    stats = _batch_stats(sizes, lo, hi, s1, s2, zeros, finite)
    per_tensor_bins = [bins or auto_bins(int(n)) for n in sizes]
    histograms: list[Histogram | None] = [None] * len(tensors)
    for b in sorted(set(per_tensor_bins)):
        group = np.flatnonzero(np.array(per_tensor_bins) == b) if bins is None else np.arange(len(tensors))
        group = group[finite[group] & regular_steps(lo[group], hi[group], b)]
        for i, histogram in zip(group.tolist(), batch_histograms(x, seg, sizes, lo, hi, group, b), strict=True):
            histograms[i] = histogram
    return [
        None if h is None or st is None else TensorSummary(st, h)
        for st, h in zip(stats, histograms, strict=True)
    ]


def regular_steps(lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Ranges whose bar width is not 0 (e.g. a constant 1e30 widened by 0.5 is still one value).

    numpy.linspace treats those apart; so does :func:`summarize`, one tensor at a time.
    """
    widen = lo == hi
    a, b = np.where(widen, lo - 0.5, lo), np.where(widen, hi + 0.5, hi)
    return (b - a) / bins != 0


def _batch_stats(
    sizes: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    s1: np.ndarray,
    s2: np.ndarray,
    zeros: np.ndarray,
    finite: np.ndarray,
) -> list[TensorStats | None]:
    """TensorStats as the single-tensor pass makes them (``_Scan.stats``), vectorized."""
    n = sizes.astype(np.float64)
    constant = lo == hi
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(constant, lo, np.minimum(np.maximum(lo + s1 / n, lo), hi))
        m2 = np.where(constant, 0.0, np.maximum(s2 - s1 * s1 / n, 0.0))
        std = np.where(sizes > 1, np.sqrt(m2 / (n - 1)), 0.0)
    norm = np.sqrt(np.maximum(s2 + 2.0 * lo * s1 + n * lo * lo, 0.0))
    columns = zip(
        sizes.tolist(), mean.tolist(), std.tolist(), lo.tolist(), hi.tolist(), norm.tolist(),
        (zeros / sizes).tolist(), finite.tolist(), strict=True,
    )
    return [
        TensorStats(
            numel=count, finite=count, mean=m, std=sd, min=a, max=b, norm=nr, zero_fraction=zf
        )
        if ok
        else None
        for count, m, sd, a, b, nr, zf, ok in columns
    ]


def batch_histograms(
    x: np.ndarray,
    seg: np.ndarray,
    sizes: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    group: np.ndarray,
    bins: int,
) -> list[Histogram]:
    """Histograms with ``bins`` bars of the tensors ``group`` (indices) of the batch."""
    if len(group) == 0:
        return []
    a, b = lo[group], hi[group]
    widen = a == b  # histogram_edges: a zero-width range widens by 0.5 on each side
    a, b = np.where(widen, a - 0.5, a), np.where(widen, b + 0.5, b)
    edges = np.linspace(a, b, bins + 1, axis=1)  # element-wise as numpy.linspace(a_i, b_i)
    position = np.full(len(lo), -1, dtype=np.int64)
    position[group] = np.arange(len(group))
    row = position[seg]
    take = row >= 0
    values, row = x[take], row[take]
    first = edges[:, 0][row]
    step = ((edges[:, -1] - edges[:, 0]) / bins)[row]
    key = np.clip(((values - first) / step).astype(np.int64), 0, bins - 1)
    flat_edges = edges.reshape(-1)
    base = row * (bins + 1)
    while True:  # numpy.histogram's correction of the estimate, repeated until none moves
        down = (values < flat_edges[base + key]) & (key > 0)
        up = (values >= flat_edges[base + key + 1]) & (key < bins - 1)
        if not (down.any() or up.any()):
            break
        key = key - down + up
    counts = np.bincount(row * bins + key, minlength=len(group) * bins).reshape(len(group), bins)
    return [Histogram(edges[i], counts[i]) for i in range(len(group))]


def compute_model_statistics(
    model: nn.Module,
    report: ModelReport,
    state: TaskState | None = None,
    names: Iterable[str] | None = None,
    bins: int | None = None,
    loader: Callable[[str], torch.Tensor] | None = None,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, TensorSummary]:
    """Summaries of ``names`` (default: every parameter and buffer), with progress by bytes.

    ``bins=None`` picks the bars per tensor (see :func:`summarize`).

    ``loader`` gives the values of shape-only (meta) placeholders of a lazily opened source;
    each is loaded, summarized and released in turn. ``tensors``: :func:`named_tensors` of the
    model, if the caller has it (a walk of the model per batch of names is not free).
    """
    state = ensure_state(state)
    tensors = named_tensors(model, report) if tensors is None else tensors
    wanted = list(tensors) if names is None else [report.alias_to_name.get(n, n) for n in names]
    small = [n for n in wanted if batchable(tensors[n])]
    # One decision for the whole job: the compiled loops are worth loading only for a large read.
    # (the report's sizes: a lazy parameter has no numel() yet)
    prefer_compiled(sum(report.tensor(n).numel for n in wanted if report.tensor(n).dtype == "float32"))
    sizes = {n: max(1, report.tensor(n).nbytes) for n in wanted}
    total = sum(sizes.values()) or 1
    done = 0
    results: dict[str, TensorSummary] = {}
    for batch in _batches(small, tensors):
        state.progress(done / total, batch[0])
        try:
            batched = summarize_small([tensors[n] for n in batch], bins)
        except MemoryError:  # ~100 bytes per element; each tensor alone below
            continue
        for name, summary in zip(batch, batched, strict=True):
            if summary is not None:  # NaN or Inf: the single-tensor pass below counts them
                results[name] = summary
                done += sizes[name]
    for name in wanted:
        if name in results:
            continue
        state.progress(done / total, name)
        tensor = tensors[name]
        if tensor.device.type == "meta" and loader is not None:
            try:
                tensor = loader(name)
            except NotInFiles:  # a buffer the model computes when built, built shape-only here
                results[name] = unavailable_summary(tensor, NOT_IN_FILES, bins)
                done += sizes[name]
                continue
        try:
            with torch.no_grad():
                results[name] = summarize(tensor, bins, state)
        except (MemoryError, torch.OutOfMemoryError) as exc:
            # one huge tensor must not cost the statistics of all the others
            results[name] = unavailable_summary(tensor, f"out of memory computing statistics ({type(exc).__name__})", bins)
        done += sizes[name]
    state.progress(1.0, "done")
    return {name: results[name] for name in wanted}


def _batches(names: list[str], tensors: Mapping[str, torch.Tensor]) -> Iterable[list[str]]:
    """``names`` in runs of about :data:`BATCH_ELEMENTS` elements, at most :data:`BATCH_TENSORS`."""
    batch: list[str] = []
    elements = 0
    for name in names:
        batch.append(name)
        elements += tensors[name].numel()
        if elements >= BATCH_ELEMENTS or len(batch) == BATCH_TENSORS:
            yield batch
            batch, elements = [], 0
    if batch:
        yield batch
