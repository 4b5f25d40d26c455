"""Statistics and histograms of one tensor: exact, float64-accumulated, never raising, near read speed.

Why not ``torch.histc``/``torch.histogram``: their counts are floats (fp32 bins saturate at
16,777,216, bf16/fp16 counts are wrong), they raise on NaN/Inf in auto-range mode and they are
~30x slower than one read of the data. Here counts are int64 and equal ``numpy.histogram`` on the
float64 values with the same edges, for every dtype. NaN, +Inf and -Inf are counted beside the
bars, never dropped.

How it stays fast (issue 6; one torch thread, like the workers):

* 8- and 16-bit dtypes (bool, int8, uint8, int16, float16, bfloat16) have at most 65,536 distinct
  values: one ``bincount`` of the bit patterns gives the exact count of every value, and all
  statistics and any histogram follow exactly from that small table.
* float32 (and everything converted to float64) is read in L2-sized chunks into preallocated
  float64 buffers. Statistics are sums of ``x - lo`` and ``(x - lo)**2`` (shifting by a data
  value bounds the cancellation; Samuelson's inequality), and the histogram key is
  ``trunc((x - lo) * scale)`` counted by ``torch.bincount`` into int64.
* Exactness of the keys: every step (exact cast, ``sub``, ``mul``, ``add``, ``clamp``,
  truncation) is monotone and deterministic, so the keys are a monotone step function of the
  value; it can disagree with numpy's rule ``edges[i] <= x < edges[i+1]`` only for values
  between an edge and the key's own step. Those few dtype values are found once per histogram
  by testing the values next to each edge (:func:`_misassigned`), and only when the data
  contains them is a chunk corrected. For float32 data this set is nearly always empty; float64
  data uses numpy's own ±1 edge correction per chunk instead.

Statistics (mean, std, min, max, norm) are over the finite values; ``zero_fraction`` is over
all elements. Complex tensors are described by their magnitude ``|z|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from paramscope.core import kernels
from paramscope.core.tasks import TaskState

DEFAULT_BINS = 64
# 128 Ki elements (512 KB of float32): large enough to amortize ~10 torch calls per chunk, small
# enough that the float64 buffer and int64 keys (1 MiB each) stay in cache.
CHUNK_ELEMENTS = 1 << 17
# The compiled loops keep no float64 buffer: larger chunks halve the per-chunk call overhead.
FUSED_CHUNK_ELEMENTS = 1 << 18
# Loading the compiled loops costs ~0.7 s once per process (numba, the scipy it imports, the cached
# machine code) and saves ~3 ns per float32 element (GPT-2's 124M: 0.13 s instead of 0.47 s): they
# are loaded for a read of at least this many elements (see :func:`prefer_compiled`), and once
# loaded used for every tensor. GPT-2 in the window or ``inspect`` never waits for them.
FUSED_MIN_ELEMENTS = 1 << 28
# Bit-pattern tables: dtypes whose every value fits a bincount of this many entries.
_TABLE_DTYPES = {
    torch.bool: (torch.uint8, 256),
    torch.uint8: (torch.uint8, 256),
    torch.int8: (torch.int8, 256),
    torch.int16: (torch.int16, 65536),
    torch.float16: (torch.int16, 65536),
    torch.bfloat16: (torch.int16, 65536),
}
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        _TABLE_DTYPES[getattr(torch, _name)] = (torch.uint8, 256)
# How far to walk from an edge looking for dtype values whose key disagrees with numpy's rule.
_MAX_WALK = 64


@dataclass(frozen=True)
class TensorStats:
    """Summary statistics of one tensor. ``None`` where a statistic is undefined."""

    numel: int
    finite: int = 0
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    norm: float | None = None
    zero_fraction: float | None = None
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    has_data: bool = True
    note: str | None = None

    @property
    def inf(self) -> int:
        return self.posinf + self.neginf

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf

    def to_dict(self) -> dict[str, object]:
        return {
            "numel": self.numel,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "norm": self.norm,
            "zero_fraction": self.zero_fraction,
            "nan": self.nan,
            "inf": self.inf,
            "posinf": self.posinf,
            "neginf": self.neginf,
            "has_data": self.has_data,
            "note": self.note,
        }


@dataclass(frozen=True)
class Histogram:
    """Exact integer counts over ``len(counts)`` equal bins between ``edges[0]`` and ``edges[-1]``."""

    edges: np.ndarray
    counts: np.ndarray
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    note: str | None = None

    @property
    def total(self) -> int:
        return int(self.counts.sum()) + self.nan + self.posinf + self.neginf

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: bar edges and counts, and the NaN/+Inf/-Inf counts beside the bars."""
        return {
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "nan": self.nan,
            "posinf": self.posinf,
            "neginf": self.neginf,
        }

    def to_csv(self) -> str:
        lines = ["left,right,count"]
        lines += [
            f"{float(lo)!r},{float(hi)!r},{int(c)}"
            for lo, hi, c in zip(self.edges[:-1], self.edges[1:], self.counts, strict=True)
        ]
        lines += [f"nan,,{self.nan}", f"+inf,,{self.posinf}", f"-inf,,{self.neginf}"]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Public functions


def data_problem(tensor: torch.Tensor) -> str | None:
    """Why a tensor has no values to look at, or ``None`` when it has."""
    if isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin):
        return "uninitialized (lazy): shape and values exist only after the first forward"
    if tensor.device.type == "meta":
        return "meta tensor: shape only, no data"
    if tensor.is_sparse or tensor.layout != torch.strided:
        return f"{tensor.layout} layout: statistics of dense tensors only"
    return None


def histogram_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin edges exactly as ``numpy.histogram`` makes them (a zero-width range widens by 0.5)."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1, dtype=np.float64)


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
        if flat.dtype in _TABLE_DTYPES:
            return _table_stats(_value_table(flat, state), numel, note)
        scan = _scan_float(flat, state, moments=True)
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
        return _empty_histogram(bins, note=problem)
    flat, note = _real_view(tensor)
    if flat.numel() == 0:
        return _empty_histogram(bins, note="empty tensor")
    try:
        if flat.dtype in _TABLE_DTYPES:
            table = _value_table(flat, state)
            return _table_histogram(table, bins, value_range or _table_range(table), note)
        # Statistics passed in may be out of date: then keys are clamped, never trusted in range.
        trusted = stats is None
        if stats is None:
            stats = tensor_stats(tensor, state)
        if stats.min is None or stats.max is None:
            if value_range is None:
                return _empty_histogram(bins, stats=stats, note=stats.note)
            stats_lo, stats_hi = value_range
        else:
            stats_lo, stats_hi = stats.min, stats.max
        if value_range is None:
            value_range = (stats_lo, stats_hi)
        inside = trusted and value_range[0] <= stats_lo and stats_hi <= value_range[1]
        scan = _histogram_pass(
            flat,
            bins,
            value_range,
            stats_lo,
            inside=inside,
            has_nonfinite=stats.nonfinite > 0,
            moments=False,
            state=state,
        )
    except (RuntimeError, TypeError) as exc:
        return _empty_histogram(bins, note=f"cannot read values: {exc}")
    return scan.histogram(note)


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
        return early, _empty_histogram(bins, note=early.note)
    numel = tensor.numel()
    try:
        flat, note = _real_view(tensor)
        if flat.dtype in _TABLE_DTYPES:
            table = _value_table(flat, state)
            stats = _table_stats(table, numel, note)
            return stats, _table_histogram(table, bins, value_range or _table_range(table), note)
        ranges = _scan_float(flat, state, moments=False, zeros=not _fused(flat))
        if ranges.nonfinite:  # rare: the masking path, both passes in full
            stats = tensor_stats(tensor, state)
            return stats, tensor_histogram(tensor, bins, value_range, stats, state)
        if ranges.count == 0:
            return ranges.stats(numel, note), _empty_histogram(bins)
        inside = value_range is None or (
            value_range[0] <= ranges.lo and ranges.hi <= value_range[1]
        )
        scan = _histogram_pass(
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
        return stats, _empty_histogram(bins, note=stats.note)
    if not scan.zeros_known:
        scan.zeros = ranges.zeros if ranges.zeros_known else _count_zeros(flat, ranges, state)
    scan.lo, scan.hi = ranges.lo, ranges.hi
    return scan.stats(numel, note), scan.histogram(note)


def _count_zeros(flat: torch.Tensor, ranges: _Scan, state: TaskState | None) -> int:
    """Zeros of finite ``flat`` when no pass counted them (a constant needs no read)."""
    if ranges.lo == ranges.hi:
        return ranges.count if ranges.lo == 0.0 else 0
    zeros = 0
    for part in _chunks(flat):
        if state is not None:
            state.check()
        zeros += part.numel() - int(torch.count_nonzero(part))
    return zeros


# ----------------------------------------------------------------------------------------------
# Shared helpers


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


def _empty_histogram(
    bins: int, stats: TensorStats | None = None, note: str | None = None
) -> Histogram:
    counts = np.zeros(bins, dtype=np.int64)
    if stats is None:
        return Histogram(histogram_edges(0.0, 1.0, bins), counts, note=note)
    return Histogram(
        histogram_edges(0.0, 1.0, bins),
        counts,
        nan=stats.nan,
        posinf=stats.posinf,
        neginf=stats.neginf,
        note=note,
    )


def _real_view(tensor: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """A flat tensor of real values, and a note if it was changed."""
    flat = tensor.detach().reshape(-1)
    if flat.is_complex():
        return flat.abs(), "complex: statistics of |z|"
    return flat, None


def _numpy_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """numpy.histogram's bin of each float64 value (-1 outside the edges; the last edge closes).

    numpy computes an estimate and corrects it by comparing with the edges, so its result is
    exactly ``edges[i] <= x < edges[i+1]``, which is what searchsorted gives.
    """
    bins = len(edges) - 1
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = bins - 1
    idx[(values < edges[0]) | (values > edges[-1]) | np.isnan(values)] = -1
    return idx


# ----------------------------------------------------------------------------------------------
# 8- and 16-bit dtypes: a table of the count of every bit pattern


@dataclass(frozen=True)
class _ValueTable:
    values: np.ndarray  # float64 value of every bit pattern (NaN patterns are NaN)
    counts: np.ndarray  # int64 count of every bit pattern


_VALUE_CACHE: dict[torch.dtype, np.ndarray] = {}


def _pattern_values(dtype: torch.dtype) -> np.ndarray:
    """The float64 value of each bit pattern 0..size-1 of ``dtype`` (cached)."""
    if dtype not in _VALUE_CACHE:
        view_dtype, size = _TABLE_DTYPES[dtype]
        patterns = torch.arange(size, dtype=torch.int32).to(view_dtype)
        _VALUE_CACHE[dtype] = patterns.view(dtype).to(torch.float64).numpy()
    return _VALUE_CACHE[dtype]


def _value_table(flat: torch.Tensor, state: TaskState | None) -> _ValueTable:
    """Exact count of every bit pattern of an 8/16-bit tensor: one read, one bincount per chunk."""
    view_dtype, size = _TABLE_DTYPES[flat.dtype]
    bits = flat.view(view_dtype)
    total = torch.zeros(size, dtype=torch.int64)
    chunk = CHUNK_ELEMENTS * 4  # the table is larger; fewer, larger chunks amortize it
    keys = torch.empty(min(chunk, bits.numel()), dtype=torch.int32)
    for start in range(0, bits.numel(), chunk):
        if state is not None:
            state.check()
        part = bits[start : start + chunk].cpu()
        k = keys[: part.numel()]
        k.copy_(part)
        if view_dtype != torch.uint8:  # signed patterns: two's complement -> 0..size-1
            k.bitwise_and_(size - 1)
        total += torch.bincount(k, minlength=size)
    return _ValueTable(_pattern_values(flat.dtype), total.numpy())


def _table_range(table: _ValueTable) -> tuple[float, float] | None:
    finite = np.isfinite(table.values) & (table.counts > 0)
    if not finite.any():
        return None
    present = table.values[finite]
    return float(present.min()), float(present.max())


def _table_stats(table: _ValueTable, numel: int, note: str | None) -> TensorStats:
    values, counts = table.values, table.counts
    nan = int(counts[np.isnan(values)].sum())
    posinf = int(counts[values == math.inf].sum())
    neginf = int(counts[values == -math.inf].sum())
    zeros = int(counts[values == 0].sum())
    keep = np.isfinite(values) & (counts > 0)
    v, c = values[keep], counts[keep]
    finite = int(c.sum())
    common = dict(numel=numel, zero_fraction=zeros / numel, nan=nan, posinf=posinf, neginf=neginf)
    if finite == 0:
        return TensorStats(**common, note=note or "no finite values")
    cf = c.astype(np.float64)
    mean = float(np.dot(cf, v) / finite)
    m2 = float(np.dot(cf, (v - mean) ** 2))
    return TensorStats(
        **common,
        finite=finite,
        mean=mean,
        std=math.sqrt(m2 / (finite - 1)) if finite > 1 else 0.0,
        min=float(v.min()),
        max=float(v.max()),
        norm=math.sqrt(float(np.dot(cf, v * v))),
        note=note,
    )


def _table_histogram(
    table: _ValueTable, bins: int, value_range: tuple[float, float] | None, note: str | None
) -> Histogram:
    values, counts = table.values, table.counts
    nan = int(counts[np.isnan(values)].sum())
    posinf = int(counts[values == math.inf].sum())
    neginf = int(counts[values == -math.inf].sum())
    if value_range is None:
        empty = np.zeros(bins, np.int64)
        return Histogram(
            histogram_edges(0.0, 1.0, bins), empty, nan, posinf, neginf, note or "no finite values"
        )
    edges = histogram_edges(value_range[0], value_range[1], bins)
    present = counts > 0
    idx = _numpy_bins(values[present], edges)
    inside = idx >= 0
    hist = np.zeros(bins, dtype=np.int64)
    np.add.at(hist, idx[inside], counts[present][inside])
    return Histogram(edges, hist, nan=nan, posinf=posinf, neginf=neginf, note=note)


# ----------------------------------------------------------------------------------------------
# float32, float64 and everything else converted to float64: chunked passes


@dataclass
class _Scan:
    """What one chunked pass found; combined into TensorStats / Histogram at the end."""

    count: int = 0  # finite values
    shift: float = 0.0  # the moments are of (x - shift); shift is a value of the tensor
    s1: float = 0.0
    s2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    zeros: int = 0
    zeros_known: bool = False  # the fused histogram pass counts zeros the range pass skipped
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    edges: np.ndarray | None = None
    counts: np.ndarray | None = None

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf

    def stats(self, numel: int, note: str | None) -> TensorStats:
        common = dict(
            numel=numel,
            zero_fraction=self.zeros / numel,
            nan=self.nan,
            posinf=self.posinf,
            neginf=self.neginf,
        )
        n = self.count
        if n == 0:
            return TensorStats(**common, note=note or "no finite values")
        if self.lo == self.hi:  # constant: exact, no rounding noise in the std
            mean, m2 = self.lo, 0.0
        else:
            # Shifting by a data value a bounds the cancellation of s2 - s1^2/n (Samuelson).
            mean = min(max(self.shift + self.s1 / n, self.lo), self.hi)
            m2 = max(self.s2 - self.s1 * self.s1 / n, 0.0)
        a = self.shift  # sum(x^2) = sum((x-a)^2) + 2a sum(x-a) + n a^2
        sumsq = max(self.s2 + 2.0 * a * self.s1 + n * a * a, 0.0)
        return TensorStats(
            **common,
            finite=n,
            mean=mean,
            std=math.sqrt(m2 / (n - 1)) if n > 1 else 0.0,
            min=self.lo,
            max=self.hi,
            norm=math.sqrt(sumsq),
            note=note,
        )

    def histogram(self, note: str | None) -> Histogram:
        assert self.edges is not None and self.counts is not None
        return Histogram(
            self.edges,
            self.counts,
            nan=self.nan,
            posinf=self.posinf,
            neginf=self.neginf,
            note=note,
        )


def _chunks(flat: torch.Tensor, size: int = 0):
    """CPU chunks of float32 or float64 values (other dtypes converted to float64, exactly as numpy)."""
    native = flat.dtype in (torch.float32, torch.float64)
    size = size or CHUNK_ELEMENTS
    for start in range(0, flat.numel(), size):
        part = flat[start : start + size].cpu()
        yield part if native else part.to(torch.float64)


def _drop_nonfinite(part: torch.Tensor, scan: _Scan) -> torch.Tensor:
    """Count NaN/Inf of a chunk into ``scan`` and return its finite values."""
    nan = torch.isnan(part)
    posinf = torch.isposinf(part)
    neginf = torch.isneginf(part)
    scan.nan += int(nan.sum())
    scan.posinf += int(posinf.sum())
    scan.neginf += int(neginf.sum())
    return part[~(nan | posinf | neginf)]


def prefer_compiled(elements: int) -> bool:
    """Load the compiled loops when reading ``elements`` float32 values pays for loading them;
    whether they are ready. Callers that know the whole job (a model's statistics) ask once."""
    if not kernels.AVAILABLE:
        return False
    return kernels.loaded() or (elements >= FUSED_MIN_ELEMENTS and kernels.load())


def _fused(flat: torch.Tensor) -> bool:
    """Whether the compiled loops of :mod:`paramscope.core.kernels` read ``flat``."""
    if not (kernels.AVAILABLE and flat.dtype == torch.float32 and flat.device.type == "cpu"):
        return False
    return prefer_compiled(flat.numel())


def _scan_float(
    flat: torch.Tensor, state: TaskState | None, moments: bool, zeros: bool = True
) -> _Scan:
    """One read: min/max, zeros, NaN/Inf and (with ``moments``) the shifted float64 sums.

    ``zeros=False`` leaves the zero count to the pass that follows (the fused loops count it).
    """
    fused = _fused(flat)
    scan = _Scan(zeros_known=zeros or (fused and moments))
    buf = None if fused else torch.empty(min(CHUNK_ELEMENTS, flat.numel()), dtype=torch.float64)
    shift_set = False
    for part in _chunks(flat, FUSED_CHUNK_ELEMENTS if fused else CHUNK_ELEMENTS):
        if state is not None:
            state.check()
        if zeros and not (fused and moments):
            scan.zeros += part.numel() - int(torch.count_nonzero(part))
        lo_t, hi_t = torch.aminmax(part)  # NaN propagates, Inf shows: the finite check is free
        lo, hi = float(lo_t), float(hi_t)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            part = _drop_nonfinite(part, scan)
            if part.numel() == 0:
                continue
            lo_t, hi_t = torch.aminmax(part)
            lo, hi = float(lo_t), float(hi_t)
        scan.lo, scan.hi = min(scan.lo, lo), max(scan.hi, hi)
        scan.count += part.numel()
        if not moments:
            continue
        if not shift_set:
            scan.shift, shift_set = lo, True
        if buf is None:
            s1, s2, found_zeros = kernels.moments(part.contiguous().numpy(), scan.shift)
            scan.s1, scan.s2 = scan.s1 + s1, scan.s2 + s2
            scan.zeros += found_zeros
            continue
        b = buf[: part.numel()]
        b.copy_(part)
        b.sub_(scan.shift)
        scan.s1 += float(b.sum())
        scan.s2 += float(torch.dot(b, b))
    return scan


@dataclass(frozen=True)
class _KeyMap:
    """float64 value -> histogram key by a fixed sequence of monotone, deterministic torch ops.

    ``inside``: every value lies within the edges; keys 0..bins, key ``bins`` folds into the last
    bar. Otherwise keys are clamped: 0 below the edges, 1..bins the bars, bins+1 above.
    """

    edges: np.ndarray
    shift: float
    inside: bool

    @property
    def bins(self) -> int:
        return len(self.edges) - 1

    @property
    def length(self) -> int:
        return self.bins + 1 if self.inside else self.bins + 2

    def keys(self, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Keys of ``b = x - shift`` (float64, overwritten) into the integer tensor ``out``."""
        e0, etop = float(self.edges[0]), float(self.edges[-1])
        # Divide by numpy's own step (not multiply by its inverse): a value exactly on an edge
        # (common: midpoints, power-of-two bins) then gets exactly the edge's key.
        step = (etop - e0) / self.bins
        offset = (self.shift - e0) / step
        b.div_(step)
        if self.inside:
            if offset != 0.0:
                b.add_(offset)
        else:
            b.add_(offset + 1.0)
            b.clamp_(0.0, self.bins + 1.0)
        out.copy_(b)  # truncation toward zero: monotone
        return out

    def rule(self) -> kernels.KeyRule:
        """The same keys for the compiled loops (same operations, same order)."""
        e0, etop = float(self.edges[0]), float(self.edges[-1])
        step = (etop - e0) / self.bins
        offset = (self.shift - e0) / step
        if self.inside:  # the torch keys need no clamp here; the same clamp changes none of them
            return kernels.KeyRule(self.shift, step, offset, float(self.bins))
        return kernels.KeyRule(self.shift, step, offset + 1.0, self.bins + 1.0)

    def true_keys(self, values: np.ndarray) -> np.ndarray:
        """The keys numpy.histogram's rule gives (the bin, shifted as described above)."""
        idx = _numpy_bins(values, self.edges)
        if self.inside:
            return idx
        idx = idx + 1
        idx[values < self.edges[0]] = 0
        idx[values > self.edges[-1]] = self.bins + 1
        return idx

    def bars(self, counts: np.ndarray) -> np.ndarray:
        if self.inside:
            bars = counts[: self.bins].copy()
            bars[-1] += counts[self.bins]
            return bars
        return counts[1 : self.bins + 1].copy()


# Neighbouring values of each edge tested for disagreement (the region is ~1 float64 ulp wide).
_EDGE_WINDOW = 4


def _misassigned(
    dtype: torch.dtype, keymap: _KeyMap, fused: bool = False
) -> list[tuple[float, int, int]] | None:
    """float32 values whose key differs from numpy's rule: [(value, key, true key)]; None if unsure.

    Keys and numpy's rule are both monotone step functions of the value, so they can disagree only
    on values between an edge and the keys' step next to it. Those lie within a float64 rounding
    of the edge: test the ``_EDGE_WINDOW`` dtype values on each side of every edge in one batch.
    A disagreement at the border of a window means the window may be too small: return None.
    ``fused``: the keys of the compiled loops (:mod:`paramscope.core.kernels`), else the torch ones.
    """
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    with np.errstate(over="ignore"):  # edges beyond the dtype's range become +-inf: not finite
        center = keymap.edges.astype(np_dtype)
    if fused:  # the same test in one compiled loop (~0.4 ms -> ~20 us a tensor)
        if np_dtype != np.float32:
            raise ValueError(f"the compiled keys read float32 only, not {dtype}")
        return kernels.edge_fixes(center, keymap.edges, keymap.rule(), keymap.inside, _EDGE_WINDOW)
    columns = [center]
    for direction in (math.inf, -math.inf):
        v = center
        for _ in range(_EDGE_WINDOW):
            v = np.nextafter(v, np_dtype.type(direction))
            columns.append(v)
    grid_np = np.stack(columns, axis=1)  # edges x (1 + 2*window), numpy: ~10x less overhead
    finite_np = np.isfinite(grid_np)
    grid = torch.from_numpy(grid_np)
    b = grid.to(torch.float64).sub_(keymap.shift)
    b[~torch.from_numpy(finite_np)] = 0.0
    flat_keys = torch.empty(b.numel(), dtype=torch.int64)
    keys = keymap.keys(b.reshape(-1), flat_keys).reshape(grid.shape)
    values = grid_np.astype(np.float64)
    true = keymap.true_keys(values.reshape(-1)).reshape(values.shape)
    estimated = keys.numpy()
    if keymap.inside:  # key `bins` is counted in the last bar
        estimated = np.minimum(estimated, keymap.bins - 1)
    wrong = (estimated != true) & finite_np
    if keymap.inside:  # values outside the edges never reach these keys
        wrong &= (values >= keymap.edges[0]) & (values <= keymap.edges[-1])
    border = [_EDGE_WINDOW, 2 * _EDGE_WINDOW]  # the outermost column on each side
    if wrong[:, border].any():
        return None
    found = {
        float(values[i, j]): (int(keys[i, j]), int(true[i, j]))
        for i, j in zip(*np.nonzero(wrong), strict=True)
    }
    return [(value, key, true_key) for value, (key, true_key) in found.items()]


def _histogram_pass(
    flat: torch.Tensor,
    bins: int,
    value_range: tuple[float, float],
    data_lo: float,
    inside: bool,
    has_nonfinite: bool,
    moments: bool,
    state: TaskState | None,
    constant: int | None = None,
) -> _Scan:
    """The histogram read: float64 keys counted by bincount into int64, exact by the edge rule.

    ``data_lo`` is the tensor's finite minimum: the shift of the keys and of the moments.
    ``inside`` promises that every finite value lies within ``value_range``; ``constant``, that
    the tensor holds this many copies of ``data_lo`` and nothing else.
    """
    keymap = _KeyMap(histogram_edges(value_range[0], value_range[1], bins), data_lo, inside)
    scan = _Scan(shift=data_lo, edges=keymap.edges)
    if constant is not None and not has_nonfinite:  # zero biases, LayerNorm ones: no read at all
        bars = np.zeros(bins, dtype=np.int64)
        where = int(_numpy_bins(np.array([data_lo]), keymap.edges)[0])
        if where >= 0:
            bars[where] = constant
        scan.count, scan.counts = constant, bars
        return scan
    if _fused(flat) and not has_nonfinite:
        fixes = _misassigned(torch.float32, keymap, fused=True)
        if fixes is not None:
            return _fused_histogram_pass(flat, keymap, fixes, scan, moments, state)
    counts = torch.zeros(keymap.length, dtype=torch.int64)
    # The edge check costs ~1 ms: worth it for large float32 tensors; one chunk is fixed directly.
    large = flat.numel() > CHUNK_ELEMENTS
    fixes = _misassigned(torch.float32, keymap) if flat.dtype == torch.float32 and large else None
    size = min(CHUNK_ELEMENTS, flat.numel())
    buf = torch.empty(size, dtype=torch.float64)
    keys = torch.empty(size, dtype=torch.int64)  # int64: bincount on int32 is twice as slow
    edges_t = torch.from_numpy(keymap.edges)
    for part in _chunks(flat):
        if state is not None:
            state.check()
        if has_nonfinite:
            part = _drop_nonfinite(part, scan)
        n = part.numel()
        if n == 0:
            continue
        b = buf[:n]
        b.copy_(part)
        b.sub_(data_lo)
        if moments:
            scan.count += n
            scan.s1 += float(b.sum())
            scan.s2 += float(torch.dot(b, b))
        k = keymap.keys(b, keys[:n])
        if fixes is None:  # float64 data or an unusual edge: numpy's own per-element correction
            _numpy_fix(k, part.to(torch.float64), edges_t, keymap)
            counts += torch.bincount(k, minlength=keymap.length)
            continue
        found = torch.bincount(k, minlength=keymap.length)
        if found.numel() > keymap.length:
            raise RuntimeError("values outside the histogram range (statistics out of date?)")
        counts += found
        for value, key, true_key in fixes:  # nearly always empty for float32 data
            hits = int((part == value).sum())
            counts[key] -= hits
            counts[true_key] += hits
    scan.counts = keymap.bars(counts.numpy())
    return scan


def _fused_histogram_pass(
    flat: torch.Tensor,
    keymap: _KeyMap,
    fixes: list[tuple[float, int, int]],
    scan: _Scan,
    moments: bool,
    state: TaskState | None,
) -> _Scan:
    """:func:`_histogram_pass` for finite float32 data through the compiled loops.

    Also counts the zeros when ``moments`` (the range pass then skips them).
    """
    counter = kernels.PairCounter(keymap.rule(), keymap.length, FUSED_CHUNK_ELEMENTS)
    scan.zeros_known = moments
    for part in _chunks(flat, FUSED_CHUNK_ELEMENTS):
        if state is not None:
            state.check()
        x = part.contiguous().numpy()
        if moments:
            s1, s2, zeros = kernels.moments(x, keymap.shift)
            scan.count += x.shape[0]
            scan.s1, scan.s2 = scan.s1 + s1, scan.s2 + s2
            scan.zeros += zeros
        counter.add(x)
        for value, key, true_key in fixes:  # nearly always empty
            hits = int(np.count_nonzero(x == np.float32(value)))
            counter.singles[key] -= hits
            counter.singles[true_key] += hits
    scan.counts = keymap.bars(counter.counts())
    return scan


def _numpy_fix(keys: torch.Tensor, x64: torch.Tensor, edges: torch.Tensor, keymap: _KeyMap) -> None:
    """Correct estimated keys (off by at most one) to numpy's rule, the way numpy.histogram does."""
    bins = keymap.bins
    first = 0 if keymap.inside else 1
    idx = (keys - first).clamp_(0, bins - 1)
    idx -= ((x64 < edges[idx]) & (idx > 0)).to(torch.int64)
    idx += ((x64 >= edges[idx + 1]) & (idx < bins - 1)).to(torch.int64)
    keys.copy_(idx + first)
    if not keymap.inside:
        keys[x64 < edges[0]] = 0
        keys[x64 > edges[-1]] = bins + 1
