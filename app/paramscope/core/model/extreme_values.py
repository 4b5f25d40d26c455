"""Statistics of tensors of values past ~1e144 or all below ~1e-145: on a copy scaled by ``2**-k``.

float64 squares overflow from ~1.3e154 (a sum of many squares sooner) and a histogram's range
``hi - lo`` from ~9e307: the std and norm of ``[-1e308, 1e308, 0]`` came out NaN, its mean
1e308 and every bin edge NaN or Inf (torch itself answers ``inf`` for that std and norm, numpy
NaN edges). Squares of values below ~1e-154 vanish: the std and norm of ``[1e-200, -3e-200]``
came out 0. Multiplying by a power of two is exact, so the scaled copy's statistics and edges
times ``2**k`` are the tensor's. In a copy scaled down only values below ~1e-136 (next to values
past 1e144) round to zero; zeros, min and max are taken from the tensor itself.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from paramscope.core.model.stat_results import Histogram, TensorStats

# A tensor whose largest magnitude lies outside these is scaled: 2**480 squared, times a 2**60
# element count, is still far from float64's 2**1024; (2**-480)**2 far from its smallest normal.
SAFE_MAGNITUDE = 2.0**480
SAFE_SMALL = 2.0**-480
_SCALED_TOP = 400  # the scaled copy's largest values are about 2**400


def scale_exponent(*values: float) -> int:
    """``k`` such that the data divided by ``2**k`` are safe to square and sum; 0 when they
    already are. ``values``: the finite min and max, and a histogram's range if given."""
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    if top == 0.0 or SAFE_SMALL <= top <= SAFE_MAGNITUDE:
        return 0
    return math.frexp(top)[1] - _SCALED_TOP


def largest_finite(values: torch.Tensor) -> float:
    """The largest finite magnitude among ``values`` (0 for none), for :func:`scale_exponent`."""
    flat = values.detach().reshape(-1).to(torch.float64)
    finite = flat[torch.isfinite(flat)]
    return float(finite.abs().max()) if finite.numel() else 0.0


def times_power_of_two(value: Any, k: int) -> Any:
    """``value * 2**k`` (a float or an array) for ``|k|`` up to 2046 (``2.0**k`` alone overflows
    past 1023)."""
    half = k // 2
    return value * 2.0**half * 2.0 ** (k - half)


def scaled(flat: torch.Tensor, k: int) -> torch.Tensor:
    """``flat / 2**k`` as float64 (exact but for values ``k`` binades above the smallest)."""
    half = -k // 2
    return flat.to(torch.float64) * 2.0**half * 2.0 ** (-k - half)


def stats_scaled_back(of_copy: TensorStats, k: int, lo: float, hi: float, zeros: int) -> TensorStats:
    """The tensor's statistics from those of its copy scaled by ``2**-k``."""

    def back(value: float | None) -> float | None:
        return None if value is None else times_power_of_two(value, k)

    return dataclasses.replace(
        of_copy,
        mean=back(of_copy.mean),
        std=back(of_copy.std),
        norm=back(of_copy.norm),
        min=lo,
        max=hi,
        zero_fraction=zeros / of_copy.numel,
    )


def histogram_scaled_back(of_copy: Histogram, k: int) -> Histogram:
    return dataclasses.replace(of_copy, edges=times_power_of_two(of_copy.edges, k))
