"""Singular-value spectra of weight matrices, and the Marchenko–Pastur law they start from.

A weight of 2 or more dimensions is read as a matrix ``out x rest`` (``weight.flatten(1)``, as
the heatmap shows a conv weight). Its singular values give:

- the spectral norm ``s_max`` (how much the layer can stretch an input at most);
- the stable rank ``||W||_F^2 / ||W||_2^2`` (Rudelson & Vershynin 2007): an effective rank that
  small singular values do not inflate; it falls as training grows a few large directions;
- the condition number ``s_max / s_min``.

Marchenko–Pastur (Marchenko & Pastur 1967): for a ``p x q`` matrix (``p <= q``) of independent
entries with mean 0 and std ``sigma``, the eigenvalues of ``W W^T / q`` fill
``[sigma^2 (1 - sqrt(l))^2, sigma^2 (1 + sqrt(l))^2]`` with ``l = p / q`` and density
``sqrt((b - x)(x - a)) / (2 pi sigma^2 l x)``; the singular values ``s = sqrt(q x)`` thus lie in
``[sigma (sqrt(q) - sqrt(p)), sigma (sqrt(q) + sqrt(p))]``. A freshly initialized weight follows
it; singular values above the upper edge are structure (or heavy tails) that an i.i.d. init does
not make (Martin & Mahoney 2021, "Implicit self-regularization in deep neural networks", JMLR).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from paramscope.core.model.dtypes import holds_numbers, no_numbers_reason
from paramscope.core.model.heatmap import as_matrix
from paramscope.core.model.tensor_stats import tensor_stats
from paramscope.core.tasks import TaskState, ensure_state

MAX_SIDE = 8192  # a smaller side above this is skipped unless asked (an SVD of 8192^2 takes minutes)
OUTLIER_MARGIN = 1.05  # a singular value this far above the Marchenko-Pastur edge counts as an outlier


@dataclass(frozen=True)
class MarchenkoPastur:
    """The singular-value law of a ``rows x cols`` matrix of i.i.d. entries with std ``sigma``."""

    sigma: float
    rows: int
    cols: int

    @property
    def ratio(self) -> float:
        """``min / max`` of the two sides (``l`` above), at most 1."""
        return min(self.rows, self.cols) / max(self.rows, self.cols)

    @property
    def low(self) -> float:
        return self.sigma * abs(math.sqrt(max(self.rows, self.cols)) - math.sqrt(min(self.rows, self.cols)))

    @property
    def high(self) -> float:
        return self.sigma * (math.sqrt(self.rows) + math.sqrt(self.cols))

    def pdf(self, s: np.ndarray) -> np.ndarray:
        """Density of one singular value at ``s`` (integrates to 1 over ``[low, high]``)."""
        if self.sigma <= 0:
            return np.zeros_like(np.asarray(s, dtype=np.float64))
        return self._standard_pdf(s) / self.sigma

    def _standard_pdf(self, s: np.ndarray) -> np.ndarray:
        """``sigma`` times the density at ``s``: the law of ``sigma = 1`` at ``s / sigma``.

        Computed so, not from ``sigma**2``, which overflows for values past 1e154 (and the
        density itself for a subnormal ``sigma``).
        """
        s = np.asarray(s, dtype=np.float64)
        q, ratio = max(self.rows, self.cols), self.ratio
        a, b = (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2
        with np.errstate(over="ignore"):  # far outside the law: an Inf is outside [a, b] too
            t = s / self.sigma
            x = t * t / q
        inside = (x > a) & (x < b) & (t > 0)
        safe_x = np.where(inside, x, 1.0)
        density = np.sqrt(np.clip((b - safe_x) * (safe_x - a), 0, None)) / (2 * math.pi * ratio * safe_x)
        return np.where(inside, density * 2 * np.where(inside, t, 0.0) / q, 0.0)

    def curve(self, edges: np.ndarray, total: int, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: expected counts per bin of a histogram of ``total`` singular values."""
        edges = np.asarray(edges, dtype=np.float64)
        width = (edges[-1] - edges[0]) / max(len(edges) - 1, 1)
        x = np.linspace(edges[0], edges[-1], points)
        if self.sigma <= 0:
            return x, np.zeros_like(x)
        return x, self._standard_pdf(x) * total * (width / self.sigma)


@dataclass
class Spectrum:
    """The singular values of one weight read as a matrix, and the numbers drawn from them."""

    name: str
    shape: tuple[int, ...]
    rows: int
    cols: int
    singular_values: np.ndarray  # descending, float64
    mean: float = 0.0
    std: float = 0.0

    @property
    def spectral_norm(self) -> float:
        return float(self.singular_values[0]) if self.singular_values.size else 0.0

    @property
    def frobenius(self) -> float:
        top = self.spectral_norm  # sums of squares relative to it: values past 1e154 overflow
        return top * math.sqrt(self.stable_rank or 0.0)

    @property
    def stable_rank(self) -> float | None:
        top = self.spectral_norm
        return None if top == 0 else float(np.sum((self.singular_values / top) ** 2))

    @property
    def condition_number(self) -> float:
        smallest = float(self.singular_values[-1]) if self.singular_values.size else 0.0
        return math.inf if smallest == 0 else self.spectral_norm / smallest

    @property
    def rank(self) -> int:
        """Numerical rank, with ``torch.linalg.matrix_rank``'s default tolerance."""
        tol = self.spectral_norm * max(self.rows, self.cols) * float(np.finfo(np.float64).eps)
        return int(np.sum(self.singular_values > tol))

    @property
    def marchenko_pastur(self) -> MarchenkoPastur:
        """The law an i.i.d. matrix with this one's entry std would follow."""
        return MarchenkoPastur(self.std, self.rows, self.cols)

    def outliers(self) -> int:
        """Singular values above the Marchenko-Pastur edge (by :data:`OUTLIER_MARGIN`)."""
        return int(np.sum(self.singular_values > self.marchenko_pastur.high * OUTLIER_MARGIN))

    def to_dict(self) -> dict[str, object]:
        law = self.marchenko_pastur
        return {
            "name": self.name,
            "shape": list(self.shape),
            "matrix": [self.rows, self.cols],
            "spectral_norm": self.spectral_norm,
            "frobenius_norm": self.frobenius,
            "stable_rank": self.stable_rank,
            "condition_number": self.condition_number,
            "rank": self.rank,
            "marchenko_pastur": {"sigma": law.sigma, "ratio": law.ratio, "low": law.low, "high": law.high,
                                 "outliers": self.outliers()},  # fmt: skip
            "singular_values": [float(v) for v in self.singular_values],
        }


def why_not(tensor: torch.Tensor, max_side: int | None = MAX_SIDE) -> str | None:
    """Why ``tensor`` has no spectrum here, or None."""
    if tensor.dim() < 2:
        return f"{tensor.dim()}-D: not a matrix"
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return f"{str(tensor.dtype).removeprefix('torch.')}: not floating-point"
    if not holds_numbers(tensor.dtype):
        return no_numbers_reason(tensor.dtype)
    if tensor.device.type == "meta":
        return "no values loaded"
    if tensor.layout != torch.strided:
        return f"{str(tensor.layout).removeprefix('torch.')} layout: spectra of dense tensors only"
    if tensor.numel() == 0:
        return "empty"
    rows, cols = tensor.shape[0], tensor.numel() // tensor.shape[0]
    if max_side is not None and min(rows, cols) > max_side:
        return f"{rows} x {cols}: both sides above {max_side}, skipped (an exact SVD would take long)"
    return None


def spectrum(name: str, tensor: torch.Tensor) -> Spectrum:
    """The spectrum of ``tensor`` read as a matrix (float64 SVD on the CPU).

    Raises:
        ValueError: the tensor is not a matrix or holds NaN/Inf (no SVD of those).
    """
    matrix = as_matrix(tensor)
    if matrix is None:
        raise ValueError(f"{name}: {tensor.dim()}-D, not a matrix")
    values = matrix.to(device="cpu", dtype=torch.complex128 if matrix.is_complex() else torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name}: holds NaN or Inf, no singular values")
    singular = torch.linalg.svdvals(values).numpy()
    if not np.isfinite(singular).all():
        raise ValueError(f"{name}: singular values past float64's range (about 1.8e308)")
    stats = tensor_stats(values.real if values.is_complex() else values)  # exact past 1e154, unlike torch
    mean, std = stats.mean or 0.0, stats.std or 0.0
    return Spectrum(name, tuple(tensor.shape), values.shape[0], values.shape[1], singular, mean, std)


@dataclass
class SpectraRequest:
    """Which tensors: names, and how to read each (a lazily opened source loads on demand)."""

    names: list[str]
    tensor_of: Callable[[str], torch.Tensor]
    max_side: int | None = MAX_SIDE
    shape_of: Callable[[str], tuple[int, ...]] | None = None  # for progress, without reading values
    # stacked experts: ``is_transposed`` of a name's tensor (None: one matrix), see core.model.experts
    experts_of: Callable[[str], bool | None] | None = None


@dataclass
class SpectraResult:
    spectra: dict[str, Spectrum] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def run(request: SpectraRequest, state: TaskState | None = None) -> SpectraResult:
    """Spectra of the requested tensors, one SVD after another; ``state`` may cancel between them.

    The ``run(inputs, state)`` form of :mod:`paramscope.core.tasks`, for a worker with progress.
    """
    state = ensure_state(state)
    result = SpectraResult()
    shape_of = request.shape_of or (lambda n: tuple(request.tensor_of(n).shape))
    experts_of = request.experts_of or (lambda _n: None)
    total = max(sum(svd_cost(shape_of(n), experts_of(n) is not None) for n in request.names), 1)
    done = 0
    for name in request.names:
        state.progress(done / total, name)
        tensor = request.tensor_of(name)
        reason = why_not(tensor, request.max_side)
        layout = experts_of(name)
        if reason is None:
            try:
                result.spectra[name] = spectrum(name, tensor) if layout is None else _experts(name, tensor, layout)
            except ValueError as exc:
                reason = str(exc).removeprefix(f"{name}: ")
        if reason is not None:
            result.skipped[name] = reason
        done += svd_cost(shape_of(name), layout is not None)
    state.progress(1.0, "")
    return result


def _experts(name: str, tensor: torch.Tensor, transposed: bool) -> Spectrum:
    from paramscope.core.model.expert_spectra import experts_spectrum  # (it builds on this module)
    from paramscope.core.model.experts import expert_matrices

    return experts_spectrum(name, tuple(tensor.shape), expert_matrices(tensor, transposed))


def svd_cost(shape: tuple[int, ...], experts: bool = False) -> int:
    """Rough SVD work (``rows * cols * min side``) of a tensor of ``shape`` read as a matrix, or
    with ``experts`` as ``shape[0]`` stacked matrices."""
    if experts and len(shape) == 3:
        return shape[0] * svd_cost(shape[1:])
    if len(shape) < 2 or 0 in shape:
        return 1
    rows, cols = shape[0], math.prod(shape) // shape[0]
    return rows * cols * min(rows, cols) + 1


def spectra_of(tensors: Mapping[str, torch.Tensor], max_side: int | None = MAX_SIDE,
               state: TaskState | None = None) -> SpectraResult:  # fmt: skip
    """:func:`run` over a mapping of tensors."""
    return run(SpectraRequest(list(tensors), tensors.__getitem__, max_side), state)
