"""Statistics and histograms of one tensor: exact, float64-accumulated, never raising, near read speed.

Why not ``torch.histc``/``torch.histogram``: their counts are floats (fp32 bins saturate at
16,777,216, bf16/fp16 counts are wrong), they raise on NaN/Inf in auto-range mode and they are
~30x slower than one read of the data. Here counts are int64 and equal ``numpy.histogram`` on the
float64 values with the same edges, for every dtype. NaN, +Inf and -Inf are counted beside the
bars, never dropped.

How it stays fast (issue 6; one torch thread, like the workers):

* 8- and 16-bit dtypes: one ``bincount`` of the bit patterns, every statistic and any histogram
  exactly from that table (:mod:`paramscope.core.model.value_tables`).
* float32 (and everything converted to float64): two chunked reads, the range
  (:mod:`paramscope.core.model.float_scan`), then the moments with the histogram keys
  (:mod:`paramscope.core.model.histogram_pass`), whose few keys that numpy would bin differently are
  found next to the edges and corrected.
* Large float32 reads through the compiled loops of :mod:`paramscope.core.model.kernels`, where
  loading them pays (:func:`~paramscope.core.model.float_scan.prefer_compiled`).

Statistics (mean, std, min, max, norm) are over the finite values; ``zero_fraction`` is over
all elements. Complex tensors are described by their magnitude ``|z|``.
"""

from __future__ import annotations

import math

import torch

from paramscope.core.model.extreme_values import (
    histogram_scaled_back,
    scale_exponent,
    scaled,
    stats_scaled_back,
    times_power_of_two,
)
from paramscope.core.model.float_scan import count_zeros, prefer_compiled, scan_float, uses_compiled
from paramscope.core.model.histogram_pass import histogram_pass
from paramscope.core.model.stat_results import (
    Histogram,
    TensorStats,
    empty_histogram,
    histogram_edges,
)
from paramscope.core.model.value_tables import (
    TABLE_DTYPES,
    table_histogram,
    table_range,
    table_stats,
    value_table,
)
from paramscope.core.tasks import TaskState

# Importers take the results and these from here, the statistics' one public module.
__all__ = [
    "DEFAULT_BINS",
    "Histogram",
    "TensorStats",
    "data_problem",
    "empty_histogram",
    "histogram_edges",
    "prefer_compiled",
    "tensor_histogram",
    "tensor_stats",
    "tensor_summary",
]

DEFAULT_BINS = 64


def data_problem(tensor: torch.Tensor) -> str | None:
    """Why a tensor has no values to look at, or ``None`` when it has."""
    if isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin):
        return "uninitialized (lazy): shape and values exist only after the first forward"
    if tensor.device.type == "meta":
        return "meta tensor: shape only, no data"
    if tensor.is_sparse or tensor.layout != torch.strided:
        return f"{tensor.layout} layout: statistics of dense tensors only"
    return None


def tensor_stats(tensor: torch.Tensor, state: TaskState | None = None) -> TensorStats:
    """Statistics of ``tensor``, accumulated in float64, in one read. Never raises for odd tensors.

    Args:
        tensor: any tensor or Parameter (any dtype, device, lazy or meta).
        state: optional progress/cancel state, checked between chunks.

    Example:
        >>> tensor_stats(torch.tensor([1.0, float("nan"), 3.0])).mean
        2.0
    """
    early = _early_stats(tensor)
    if early is not None:
        return early
    numel = tensor.numel()
    try:
        flat, note = _real_view(tensor)
        if flat.dtype in TABLE_DTYPES:
            return table_stats(value_table(flat, state), numel, note)
        scan = scan_float(flat, state, moments=True)
        k = scale_exponent(scan.lo, scan.hi)
        if k:  # squares would overflow: see extreme_values
            of_copy = scan_float(scaled(flat, k), state, moments=True).stats(numel, note)
            return stats_scaled_back(of_copy, k, scan.lo, scan.hi, scan.zeros)
    except (RuntimeError, TypeError) as exc:  # e.g. float8 types without a float64 cast
        return TensorStats(numel=numel, has_data=False, note=f"cannot read values: {exc}")
    return scan.stats(numel, note)


def tensor_histogram(
    tensor: torch.Tensor,
    bins: int = DEFAULT_BINS,
    value_range: tuple[float, float] | None = None,
    stats: TensorStats | None = None,
    state: TaskState | None = None,
) -> Histogram:
    """Histogram of the finite values of ``tensor`` with exact int64 counts.

    Counts equal ``numpy.histogram(values_as_float64, bins=edges)`` with edges from
    :func:`histogram_edges`.

    Args:
        tensor: any tensor; see :func:`tensor_stats` for the odd cases.
        bins: number of equal-width bins (>= 1).
        value_range: ``(lo, hi)``; values outside are not counted in the bars. Defaults to the
            finite min and max.
        stats: the tensor's statistics if already known (saves one pass for the range).
        state: optional progress/cancel state.

    Example:
        >>> tensor_histogram(torch.tensor([0.0, 1.0, 1.0]), bins=2).counts.tolist()
        [1, 2]
    """
    _check_bins(bins, value_range)
    problem = data_problem(tensor)
    if problem is not None:
        return empty_histogram(bins, note=problem)
    flat, note = _real_view(tensor)
    if flat.numel() == 0:
        return empty_histogram(bins, note="empty tensor")
    try:
        if flat.dtype in TABLE_DTYPES:
            table = value_table(flat, state)
            return table_histogram(table, bins, value_range or table_range(table), note)
        return _float_histogram(tensor, flat, bins, value_range, stats, state, note)
    except (RuntimeError, TypeError) as exc:
        return empty_histogram(bins, note=f"cannot read values: {exc}")


def _float_histogram(
    tensor: torch.Tensor,
    flat: torch.Tensor,
    bins: int,
    value_range: tuple[float, float] | None,
    stats: TensorStats | None,
    state: TaskState | None,
    note: str | None,
) -> Histogram:
    """:func:`tensor_histogram` of float data: the range from ``stats`` (read if not given)."""
    # Statistics passed in may be out of date: then keys are clamped, never trusted in range.
    trusted = stats is None
    if stats is None:
        stats = tensor_stats(tensor, state)
    if stats.min is None or stats.max is None:
        if value_range is None:
            return empty_histogram(bins, stats=stats, note=stats.note)
        stats_lo, stats_hi = value_range
    else:
        stats_lo, stats_hi = stats.min, stats.max
    if value_range is None:
        value_range = (stats_lo, stats_hi)
    inside = trusted and value_range[0] <= stats_lo and stats_hi <= value_range[1]
    k = max(scale_exponent(stats_lo, stats_hi, *value_range), 0)  # (tiny values bin as they are)
    if k:  # the range or the edges would overflow: see extreme_values
        flat, stats_lo = scaled(flat, k), times_power_of_two(stats_lo, -k)
        value_range = (times_power_of_two(value_range[0], -k), times_power_of_two(value_range[1], -k))
    scan = histogram_pass(
        flat,
        bins,
        value_range,
        stats_lo,
        inside=inside,
        has_nonfinite=stats.nonfinite > 0,
        moments=False,
        state=state,
    )
    return histogram_scaled_back(scan.histogram(note), k) if k else scan.histogram(note)


def tensor_summary(
    tensor: torch.Tensor,
    bins: int = DEFAULT_BINS,
    value_range: tuple[float, float] | None = None,
    state: TaskState | None = None,
) -> tuple[TensorStats, Histogram]:
    """Statistics and histogram of ``tensor`` in two reads (range first, then everything else).

    Gives the same results as :func:`tensor_stats` followed by :func:`tensor_histogram`, faster:
    the moments are summed in the histogram pass from the buffer it fills anyway.

    Args:
        tensor: any tensor or Parameter.
        bins: number of equal-width bins (>= 1).
        value_range: ``(lo, hi)`` of the bars; defaults to the finite min and max.
        state: optional progress/cancel state, checked between chunks.

    Example:
        >>> stats, hist = tensor_summary(torch.arange(4.0), bins=2)
        >>> stats.mean, hist.counts.tolist()
        (1.5, [2, 2])
    """
    _check_bins(bins, value_range)
    early = _early_stats(tensor)
    if early is not None:
        return early, empty_histogram(bins, note=early.note)
    numel = tensor.numel()
    try:
        flat, note = _real_view(tensor)
        if flat.dtype in TABLE_DTYPES:
            table = value_table(flat, state)
            stats = table_stats(table, numel, note)
            return stats, table_histogram(table, bins, value_range or table_range(table), note)
        ranges = scan_float(flat, state, moments=False, zeros=not uses_compiled(flat))
        if ranges.nonfinite or scale_exponent(ranges.lo, ranges.hi, *(value_range or ())):
            stats = tensor_stats(tensor, state)  # rare: both passes in full (masking, or scaling)
            return stats, tensor_histogram(tensor, bins, value_range, stats, state)
        if ranges.count == 0:
            return ranges.stats(numel, note), empty_histogram(bins)
        inside = value_range is None or (
            value_range[0] <= ranges.lo and ranges.hi <= value_range[1]
        )
        scan = histogram_pass(
            flat,
            bins,
            value_range or (ranges.lo, ranges.hi),
            ranges.lo,
            inside=inside,
            has_nonfinite=False,
            moments=True,
            state=state,
            constant=ranges.count if ranges.lo == ranges.hi else None,
        )
    except (RuntimeError, TypeError) as exc:
        stats = TensorStats(numel=numel, has_data=False, note=f"cannot read values: {exc}")
        return stats, empty_histogram(bins, note=stats.note)
    if not scan.zeros_known:
        scan.zeros = ranges.zeros if ranges.zeros_known else count_zeros(flat, ranges, state)
    scan.lo, scan.hi = ranges.lo, ranges.hi
    return scan.stats(numel, note), scan.histogram(note)


def _check_bins(bins: int, value_range: tuple[float, float] | None) -> None:
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if value_range is not None:
        lo, hi = value_range
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise ValueError(f"histogram range must be finite with lo <= hi, got {value_range}")


def _early_stats(tensor: torch.Tensor) -> TensorStats | None:
    """Statistics of tensors without values to read (lazy, meta, sparse, empty), else None."""
    lazy = isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin)
    numel = 0 if lazy else tensor.numel()
    problem = data_problem(tensor)
    if problem is not None:
        return TensorStats(numel=numel, has_data=False, note=problem)
    if numel == 0:
        return TensorStats(numel=0, note="empty tensor")
    return None


def _real_view(tensor: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """A flat tensor of real values, and a note if it was changed."""
    flat = tensor.detach().reshape(-1)
    if flat.is_complex():
        return flat.abs(), "complex: statistics of |z|"
    return flat, None
