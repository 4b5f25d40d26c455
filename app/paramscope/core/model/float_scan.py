"""The chunked read of float tensors: range, zeros, NaN/Inf and the shifted moments.

float32 (and everything converted to float64) is read in L2-sized chunks into preallocated
float64 buffers. Statistics are sums of ``x - lo`` and ``(x - lo)**2`` (shifting by a data value
bounds the cancellation; Samuelson's inequality). float32 on the CPU goes through the compiled
loops of :mod:`paramscope.core.model.kernels` when a read is large enough to pay for loading them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from paramscope.core.model import kernels
from paramscope.core.model.stat_results import Histogram, TensorStats
from paramscope.core.tasks import TaskState

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


@dataclass
class Scan:
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


def chunks(flat: torch.Tensor, size: int = 0):
    """CPU chunks of float32 or float64 values (other dtypes converted to float64, exactly as numpy)."""
    native = flat.dtype in (torch.float32, torch.float64)
    size = size or CHUNK_ELEMENTS
    for start in range(0, flat.numel(), size):
        part = flat[start : start + size].cpu()
        yield part if native else part.to(torch.float64)


def drop_nonfinite(part: torch.Tensor, scan: Scan) -> torch.Tensor:
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
    chosen = kernels.job_choice()  # a job split over processes decided once for all its parts
    if chosen is not None:
        return chosen
    return kernels.loaded() or (elements >= FUSED_MIN_ELEMENTS and kernels.load())


def uses_compiled(flat: torch.Tensor) -> bool:
    """Whether the compiled loops of :mod:`paramscope.core.model.kernels` read ``flat``."""
    if not (kernels.AVAILABLE and flat.dtype == torch.float32 and flat.device.type == "cpu"):
        return False
    return prefer_compiled(flat.numel())


def scan_float(
    flat: torch.Tensor, state: TaskState | None, moments: bool, zeros: bool = True
) -> Scan:
    """One read: min/max, zeros, NaN/Inf and (with ``moments``) the shifted float64 sums.

    ``zeros=False`` leaves the zero count to the pass that follows (the fused loops count it).
    """
    compiled = uses_compiled(flat)
    scan = Scan(zeros_known=zeros or (compiled and moments))
    buf = None if compiled else torch.empty(min(CHUNK_ELEMENTS, flat.numel()), dtype=torch.float64)
    shift_set = False
    for part in chunks(flat, FUSED_CHUNK_ELEMENTS if compiled else CHUNK_ELEMENTS):
        if state is not None:
            state.check()
        if zeros and not (compiled and moments):
            scan.zeros += part.numel() - int(torch.count_nonzero(part))
        lo_t, hi_t = torch.aminmax(part)  # NaN propagates, Inf shows: the finite check is free
        lo, hi = float(lo_t), float(hi_t)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            part = drop_nonfinite(part, scan)
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


def count_zeros(flat: torch.Tensor, ranges: Scan, state: TaskState | None) -> int:
    """Zeros of finite ``flat`` when no pass counted them (a constant needs no read)."""
    if ranges.lo == ranges.hi:
        return ranges.count if ranges.lo == 0.0 else 0
    zeros = 0
    for part in chunks(flat):
        if state is not None:
            state.check()
        zeros += part.numel() - int(torch.count_nonzero(part))
    return zeros
