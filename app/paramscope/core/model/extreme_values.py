"""Statistics of tensors with values past ~1e144: computed on a copy scaled by a power of two.

float64 squares overflow from ~1.3e154 (a sum of many squares sooner) and a histogram's range
``hi - lo`` from ~9e307: the std and norm of ``[-1e308, 1e308, 0]`` came out NaN, its mean
1e308 and every bin edge NaN or Inf (torch itself answers ``inf`` for that std and norm, numpy
NaN edges). Dividing by ``2**k`` is exact, so the scaled copy's statistics and edges times
``2**k`` are the tensor's. In the copy only values below ~1e-136 (next to values past 1e144)
round to zero; zeros, min and max are taken from the tensor itself.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from paramscope.core.model.stat_results import Histogram, TensorStats

# Past this magnitude a tensor is scaled: 2**480 squared, times a 2**60 element count, is still
# far from float64's 2**1024.
SAFE_MAGNITUDE = 2.0**480
_SCALED_TOP = 400  # the scaled copy's largest values are about 2**400


def scale_exponent(*values: float) -> int:
    """``k`` such that the data divided by ``2**k`` are safe to square and sum; 0 when they
    already are. ``values``: the finite min and max, and a histogram's range if given."""
    top = max((abs(v) for v in values if math.isfinite(v)), default=0.0)
    if top <= SAFE_MAGNITUDE:
        return 0
    return math.frexp(top)[1] - _SCALED_TOP


def scaled(flat: torch.Tensor, k: int) -> torch.Tensor:
    """``flat / 2**k`` as float64 (exact but for values ``k`` binades above the smallest)."""
    return flat.to(torch.float64) * 2.0**-k


def stats_scaled_back(of_copy: TensorStats, k: int, lo: float, hi: float, zeros: int) -> TensorStats:
    """The tensor's statistics from those of its copy scaled by ``2**-k``."""
    factor = 2.0**k

    def back(value: float | None) -> float | None:
        return None if value is None else value * factor

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
    return dataclasses.replace(of_copy, edges=of_copy.edges * 2.0**k)
