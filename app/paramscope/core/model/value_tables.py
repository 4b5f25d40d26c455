"""Statistics and histograms of 8- and 16-bit tensors from a table of the count of every bit pattern.

bool, int8, uint8, int16, float16, bfloat16 and the float8 types have at most 65,536 distinct
values: one ``bincount`` of the bit patterns gives the exact count of every value, and all
statistics and any histogram follow exactly from that small table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from paramscope.core.model.stat_results import Histogram, TensorStats, histogram_edges, numpy_bins
from paramscope.core.tasks import TaskState

# Bit patterns read per chunk: the table is larger than a float chunk's buffers; fewer, larger
# chunks amortize it.
TABLE_CHUNK_ELEMENTS = 1 << 19
# Bit-pattern tables: dtypes whose every value fits a bincount of this many entries.
TABLE_DTYPES = {
    torch.bool: (torch.uint8, 256),
    torch.uint8: (torch.uint8, 256),
    torch.int8: (torch.int8, 256),
    torch.int16: (torch.int16, 65536),
    torch.float16: (torch.int16, 65536),
    torch.bfloat16: (torch.int16, 65536),
}
for _name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
    if hasattr(torch, _name):
        TABLE_DTYPES[getattr(torch, _name)] = (torch.uint8, 256)


@dataclass(frozen=True)
class ValueTable:
    values: np.ndarray  # float64 value of every bit pattern (NaN patterns are NaN)
    counts: np.ndarray  # int64 count of every bit pattern


_VALUE_CACHE: dict[torch.dtype, np.ndarray] = {}


def _pattern_values(dtype: torch.dtype) -> np.ndarray:
    """The float64 value of each bit pattern 0..size-1 of ``dtype`` (cached)."""
    if dtype not in _VALUE_CACHE:
        view_dtype, size = TABLE_DTYPES[dtype]
        patterns = torch.arange(size, dtype=torch.int32).to(view_dtype)
        _VALUE_CACHE[dtype] = patterns.view(dtype).to(torch.float64).numpy()
    return _VALUE_CACHE[dtype]


def value_table(flat: torch.Tensor, state: TaskState | None) -> ValueTable:
    """Exact count of every bit pattern of an 8/16-bit tensor: one read, one bincount per chunk."""
    view_dtype, size = TABLE_DTYPES[flat.dtype]
    bits = flat.view(view_dtype)
    total = torch.zeros(size, dtype=torch.int64)
    chunk = TABLE_CHUNK_ELEMENTS
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
    return ValueTable(_pattern_values(flat.dtype), total.numpy())


def table_range(table: ValueTable) -> tuple[float, float] | None:
    finite = np.isfinite(table.values) & (table.counts > 0)
    if not finite.any():
        return None
    present = table.values[finite]
    return float(present.min()), float(present.max())


def table_stats(table: ValueTable, numel: int, note: str | None) -> TensorStats:
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


def table_histogram(
    table: ValueTable, bins: int, value_range: tuple[float, float] | None, note: str | None
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
    idx = numpy_bins(values[present], edges)
    inside = idx >= 0
    hist = np.zeros(bins, dtype=np.int64)
    np.add.at(hist, idx[inside], counts[present][inside])
    return Histogram(edges, hist, nan=nan, posinf=posinf, neginf=neginf, note=note)
