"""Statistics and histograms of tensors: exact, float64-accumulated, never raising.

Why not ``torch.histc``/``torch.histogram``: their counts are floats (fp32 bins saturate at
16,777,216, bf16/fp16 counts are wrong) and they raise on NaN/Inf in auto-range mode. Here,
values are processed in chunks converted to float64; bins are assigned with the same rule as
``numpy.histogram`` (so counts equal a float64 NumPy reference exactly) and counted with
``torch.bincount`` into int64. NaN, +Inf and -Inf are counted beside the bars, never dropped.

Statistics (mean, std, min, max, norm) are over the finite values; ``zero_fraction`` is over
all elements. Complex tensors are described by their magnitude ``|z|``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from paramscope.core.tasks import TaskState

DEFAULT_BINS = 64
CHUNK_ELEMENTS = 1 << 20


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

    def to_csv(self) -> str:
        lines = ["left,right,count"]
        lines += [
            f"{lo!r},{hi!r},{int(c)}"
            for lo, hi, c in zip(self.edges[:-1], self.edges[1:], self.counts, strict=True)
        ]
        lines += [f"nan,,{self.nan}", f"+inf,,{self.posinf}", f"-inf,,{self.neginf}"]
        return "\n".join(lines) + "\n"


@dataclass
class _Accumulator:
    """Running float64 moments over chunks (Chan's parallel combination, stable)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    sumsq: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    zeros: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    extra: list[str] = field(default_factory=list)

    def add_finite(self, x: torch.Tensor) -> None:
        n = x.numel()
        if n == 0:
            return
        lo, hi = torch.aminmax(x)
        chunk_mean = float(x.mean())
        centered = x - chunk_mean
        chunk_m2 = float(torch.dot(centered, centered))
        self.sumsq += float(torch.dot(x, x))
        self.lo = min(self.lo, float(lo))
        self.hi = max(self.hi, float(hi))
        total = self.count + n
        delta = chunk_mean - self.mean
        self.mean += delta * n / total
        self.m2 += chunk_m2 + delta * delta * self.count * n / total
        self.count = total


def data_problem(tensor: torch.Tensor) -> str | None:
    """Why a tensor has no values to look at, or ``None`` when it has."""
    if isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin):
        return "uninitialized (lazy): shape and values exist only after the first forward"
    if tensor.device.type == "meta":
        return "meta tensor: shape only, no data"
    if tensor.is_sparse or tensor.layout != torch.strided:
        return f"{tensor.layout} layout: statistics of dense tensors only"
    return None


def _real_view(tensor: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """A flat tensor whose values can be converted to float64, and a note if it was changed."""
    flat = tensor.detach().reshape(-1)
    if flat.is_complex():
        return flat.abs(), "complex: statistics of |z|"
    if flat.dtype == torch.bool:
        return flat.to(torch.uint8), None
    return flat, None


def _chunks(flat: torch.Tensor, chunk: int = CHUNK_ELEMENTS):
    for start in range(0, flat.numel(), chunk):
        yield flat[start : start + chunk].to(torch.float64)


def _split_nonfinite(x64: torch.Tensor, acc: _Accumulator) -> torch.Tensor:
    """Count NaN/Inf of a float64 chunk into ``acc`` and return its finite values."""
    # A finite sum proves every element is finite: one cheap pass instead of a mask.
    if math.isfinite(float(x64.sum())):
        return x64
    nan = torch.isnan(x64)
    posinf = torch.isposinf(x64)
    neginf = torch.isneginf(x64)
    acc.nan += int(nan.sum())
    acc.posinf += int(posinf.sum())
    acc.neginf += int(neginf.sum())
    return x64[~(nan | posinf | neginf)]


def tensor_stats(tensor: torch.Tensor, state: TaskState | None = None) -> TensorStats:
    """Statistics of ``tensor``, accumulated in float64. Never raises for odd tensors.

    Args:
        tensor: any tensor or Parameter (any dtype, device, lazy or meta).
        state: optional progress/cancel state, checked between chunks.

    Example:
        >>> tensor_stats(torch.tensor([1.0, float("nan"), 3.0])).mean
        2.0
    """
    numel = 0 if isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin) else tensor.numel()
    problem = data_problem(tensor)
    if problem is not None:
        return TensorStats(numel=numel, has_data=False, note=problem)
    if numel == 0:
        return TensorStats(numel=0, note="empty tensor")
    try:
        flat, note = _real_view(tensor)
        acc = _Accumulator()
        for x64 in _chunks(flat):
            if state is not None:
                state.check()
            acc.zeros += int((x64 == 0).sum())
            acc.add_finite(_split_nonfinite(x64, acc))
    except (RuntimeError, TypeError) as exc:  # e.g. float8 types without a float64 cast
        return TensorStats(numel=numel, has_data=False, note=f"cannot read values: {exc}")
    finite = acc.count
    if finite == 0:
        return TensorStats(
            numel=numel,
            zero_fraction=acc.zeros / numel,
            nan=acc.nan,
            posinf=acc.posinf,
            neginf=acc.neginf,
            note=note or "no finite values",
        )
    std = math.sqrt(acc.m2 / (finite - 1)) if finite > 1 else 0.0
    return TensorStats(
        numel=numel,
        finite=finite,
        mean=acc.mean,
        std=std,
        min=acc.lo,
        max=acc.hi,
        norm=math.sqrt(acc.sumsq),
        zero_fraction=acc.zeros / numel,
        nan=acc.nan,
        posinf=acc.posinf,
        neginf=acc.neginf,
        note=note,
    )


def histogram_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin edges exactly as ``numpy.histogram`` makes them (a zero-width range widens by 0.5)."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1, dtype=np.float64)


def _bin_indices(x64: torch.Tensor, edges: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index of each value in range, by numpy.histogram's rule including its edge fixes."""
    lo, hi = float(edges[0]), float(edges[-1])
    idx = ((x64 - lo) * (bins / (hi - lo))).to(torch.int64).clamp_(0, bins - 1)
    idx -= (x64 < edges[idx]).to(torch.int64)
    idx += ((x64 >= edges[idx + 1]) & (idx != bins - 1)).to(torch.int64)
    return idx


def tensor_histogram(
    tensor: torch.Tensor,
    bins: int = DEFAULT_BINS,
    value_range: tuple[float, float] | None = None,
    stats: TensorStats | None = None,
    state: TaskState | None = None,
) -> Histogram:
    """Histogram of the finite values of ``tensor`` with exact int64 counts.

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
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    empty = np.zeros(bins, dtype=np.int64)
    problem = data_problem(tensor)
    if problem is not None:
        return Histogram(histogram_edges(0.0, 1.0, bins), empty, note=problem)
    if stats is None and value_range is None:
        stats = tensor_stats(tensor, state)
    if value_range is None:
        assert stats is not None
        if stats.min is None or stats.max is None:
            return Histogram(
                histogram_edges(0.0, 1.0, bins),
                empty,
                nan=stats.nan,
                posinf=stats.posinf,
                neginf=stats.neginf,
                note=stats.note,
            )
        value_range = (stats.min, stats.max)
    lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"histogram range must be finite with lo <= hi, got {value_range}")
    edges = histogram_edges(lo, hi, bins)
    flat, note = _real_view(tensor)
    edges_t = torch.from_numpy(edges).to(flat.device)
    counts = torch.zeros(bins, dtype=torch.int64, device=flat.device)
    acc = _Accumulator()
    for x64 in _chunks(flat):
        if state is not None:
            state.check()
        finite = _split_nonfinite(x64, acc)
        inside = finite[(finite >= edges[0]) & (finite <= edges[-1])]
        if inside.numel():
            counts += torch.bincount(_bin_indices(inside, edges_t, bins), minlength=bins)
    return Histogram(
        edges, counts.cpu().numpy(), nan=acc.nan, posinf=acc.posinf, neginf=acc.neginf, note=note
    )
