"""What the statistics of a tensor are: :class:`TensorStats`, :class:`Histogram`, and numpy's
rule for bin edges and bins, which every pass of :mod:`paramscope.core.model.tensor_stats` matches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)  # slots: a summary per tensor, a million of them
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


@dataclass(frozen=True, slots=True)
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


def histogram_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """Bin edges exactly as ``numpy.histogram`` makes them (a zero-width range widens by 0.5)."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1, dtype=np.float64)


def empty_histogram(
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


def numpy_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """numpy.histogram's bin of each float64 value (-1 outside the edges; the last edge closes).

    numpy computes an estimate and corrects it by comparing with the edges, so its result is
    exactly ``edges[i] <= x < edges[i+1]``, which is what searchsorted gives.
    """
    bins = len(edges) - 1
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = bins - 1
    idx[(values < edges[0]) | (values > edges[-1]) | np.isnan(values)] = -1
    return idx
