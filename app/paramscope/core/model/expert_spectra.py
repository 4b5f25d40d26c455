"""The spectrum of a mixture of experts stacked in one tensor: every expert's singular values.

Read as one ``experts x (out * in)`` matrix (as a conv weight is) a stack of experts has a
meaningless spectrum. Each expert's ``out x in`` matrix has its own; the singular values of a
block-diagonal matrix are the union of its blocks', so pooling them is exactly the spectrum of
the experts side by side, and each follows the Marchenko–Pastur law of an ``out x in`` matrix at
init. The numbers a single matrix has are given per expert: the largest spectral norm, the mean
stable rank, the largest condition number, the smallest rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from paramscope.core.model.spectra import Spectrum
from paramscope.core.model.tensor_stats import tensor_stats


@dataclass
class ExpertsSpectrum(Spectrum):
    """:class:`Spectrum` of stacked experts: ``rows x cols`` is one expert's matrix and
    ``singular_values`` pools every expert's (descending); ``per_expert`` keeps them apart."""

    per_expert: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # experts x min(rows, cols)

    @property
    def experts(self) -> int:
        return len(self.per_expert)

    @property
    def stable_rank(self) -> float | None:
        tops = self.per_expert[:, 0]
        if not tops.size or not np.all(tops > 0):
            return None
        return float(np.mean(np.sum((self.per_expert / tops[:, None]) ** 2, axis=1)))

    @property
    def frobenius(self) -> float:  # of the whole stacked tensor
        top = self.spectral_norm
        return 0.0 if top == 0 else top * math.sqrt(float(np.sum((self.singular_values / top) ** 2)))

    @property
    def condition_number(self) -> float:
        smallest = self.per_expert[:, -1]
        if not smallest.size or np.any(smallest == 0):
            return math.inf
        return float(np.max(self.per_expert[:, 0] / smallest))

    @property
    def rank(self) -> int:
        eps = max(self.rows, self.cols) * float(np.finfo(np.float64).eps)
        return int(min(np.sum(row > row[0] * eps) for row in self.per_expert)) if self.experts else 0

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "experts": self.experts}


def experts_spectrum(name: str, shape: tuple[int, ...], stacked: torch.Tensor) -> ExpertsSpectrum:
    """The pooled spectrum of ``stacked`` (``experts x out x in``, each expert as ``F.linear``
    takes it), a tensor of ``shape``.

    Raises:
        ValueError: NaN or Inf (no SVD of those), or singular values past float64's range.
    """
    values = stacked.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name}: holds NaN or Inf, no singular values")
    per_expert = torch.linalg.svdvals(values).numpy()  # one SVD per expert (batched)
    if not np.isfinite(per_expert).all():
        raise ValueError(f"{name}: singular values past float64's range (about 1.8e308)")
    stats = tensor_stats(values)
    pooled = np.sort(per_expert.reshape(-1))[::-1].copy()
    rows, cols = values.shape[1], values.shape[2]
    return ExpertsSpectrum(name, shape, rows, cols, pooled, stats.mean or 0.0, stats.std or 0.0, per_expert=per_expert)
