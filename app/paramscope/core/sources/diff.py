"""Compare a model with a checkpoint, or two checkpoints, tensor by tensor (in float64).

Per tensor: max |Δ|, relative change ‖Δ‖/‖A‖, cosine similarity of A and B, and a histogram of
Δ = B − A. Names only on one side and shape/dtype mismatches are listed. Names that are one tied
tensor on both sides are compared once, under the first name, with the others as aliases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from paramscope.core.model.dtypes import holds_numbers
from paramscope.core.model.extreme_values import (
    SAFE_SMALL,
    largest_finite,
    scale_exponent,
    scaled,
    times_power_of_two,
)
from paramscope.core.model.model_statistics import BATCH_TENSORS
from paramscope.core.model.tensor_stats import Histogram, tensor_histogram
from paramscope.core.sources.diff_small import batchable, change_and_cosine, diff_small
from paramscope.core.tasks import TaskState, ensure_state

DEFAULT_DIFF_BINS = 32


@dataclass
class TensorDiff:
    name: str
    shape: tuple[int, ...]
    dtype_a: str
    dtype_b: str
    max_abs: float
    rel_change: float  # ||B - A|| / ||A||; inf when A is zero and B is not
    cosine: float | None  # None when either side is all zeros
    norm_a: float
    norm_b: float
    histogram: Histogram | None = None
    aliases: tuple[str, ...] = ()

    @property
    def identical(self) -> bool:
        return self.max_abs == 0.0

    def to_dict(self, with_histogram: bool = True) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "aliases": list(self.aliases),
            "shape": list(self.shape),
            "dtype_a": self.dtype_a,
            "dtype_b": self.dtype_b,
            "max_abs_diff": self.max_abs,
            "rel_change": self.rel_change,
            "cosine": self.cosine,
            "norm_a": self.norm_a,
            "norm_b": self.norm_b,
        }
        if with_histogram and self.histogram is not None:
            out["histogram"] = self.histogram.to_dict()
        return out


@dataclass(frozen=True)
class Mismatch:
    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    dtype_a: str
    dtype_b: str

    def describe(self) -> str:
        if self.shape_a != self.shape_b:
            return f"{self.name}: shape {list(self.shape_a)} vs {list(self.shape_b)}"
        return f"{self.name}: dtype {self.dtype_a} vs {self.dtype_b}"


@dataclass
class DiffResult:
    tensors: list[TensorDiff] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    mismatched: list[Mismatch] = field(default_factory=list)
    # a name on one side only that is there one tensor with a name both sides have (a tie the
    # other side does not write, e.g. lm_head.weight of tied embeddings): name -> that name
    tied_only: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> list[TensorDiff]:
        return [t for t in self.tensors if not t.identical]

    @property
    def recast(self) -> list[TensorDiff]:
        """Tensors with the same values in another dtype (a bfloat16 file against its float32 export)."""
        return [t for t in self.tensors if t.identical and t.dtype_a != t.dtype_b]

    @property
    def identical(self) -> bool:
        return not (self.changed or self.recast or self.only_a or self.only_b or self.mismatched)

    def to_dict(self, with_histogram: bool = True) -> dict[str, object]:
        return {
            "tensors": [t.to_dict(with_histogram) for t in self.tensors],
            "only_a": list(self.only_a),
            "only_b": list(self.only_b),
            "tied_only": dict(self.tied_only),
            "mismatched": [m.__dict__ | {"shape_a": list(m.shape_a), "shape_b": list(m.shape_b)} for m in self.mismatched],
            "changed": len(self.changed),
            "recast": [t.name for t in self.recast],
            "identical": self.identical,
        }


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _as_float64(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().to("cpu")
    if t.is_quantized:  # compared as the values it stands for (int8 x scale + zero point)
        t = t.dequantize()
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.to(torch.float64).reshape(-1)


def diff_tensors(name: str, a: torch.Tensor, b: torch.Tensor, bins: int = DEFAULT_DIFF_BINS) -> TensorDiff:
    """Compare two tensors of one shape in float64.

    Example:
        >>> d = diff_tensors("w", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.5]))
        >>> d.max_abs, round(d.rel_change, 6)
        (0.5, 0.223607)
    """
    if not (holds_numbers(a.dtype) and holds_numbers(b.dtype)):
        return _bits_diff(name, a, b)
    a64, b64 = _as_float64(a), _as_float64(b)
    delta = b64 - a64
    if delta.numel() and not bool(torch.isfinite(delta).all()):
        # NaN on both sides, or the same Inf, is no change (inf - inf is NaN): a checkpoint
        # compared with its own copy is identical
        delta = torch.where((a64 == b64) | (a64.isnan() & b64.isnan()), 0.0, delta)
    norm_a, norm_b, norm_d, dot = _norms_and_dot(a64, b64, delta)
    max_abs = float(delta.abs().max()) if delta.numel() else 0.0
    k = 0
    if not math.isfinite(norm_a + norm_b + norm_d + dot) or min(norm_a, norm_b) < SAFE_SMALL:
        k = scale_exponent(largest_finite(a64), largest_finite(b64))  # squares over- or underflowed? (see extreme_values)
    if k:  # the same sums over copies scaled by 2**-k
        small_a, small_b = scaled(a64, k), scaled(b64, k)
        norm_a, norm_b, norm_d, dot = _norms_and_dot(small_a, small_b, small_b - small_a)
    rel, cosine = change_and_cosine(norm_a, norm_b, norm_d, dot)
    norm_a, norm_b = times_power_of_two(norm_a, k), times_power_of_two(norm_b, k)
    histogram = tensor_histogram(delta, bins=bins) if bins > 0 else None
    return TensorDiff(name, tuple(a.shape), _dtype(a), _dtype(b), max_abs, rel, cosine, norm_a, norm_b, histogram)


def _bits_diff(name: str, a: torch.Tensor, b: torch.Tensor) -> TensorDiff:
    """Packed or raw bits (float4_e2m1fn_x2, bits8): identical or not, by their bytes; no numbers."""
    same = a.dtype == b.dtype and torch.equal(_bytes(a), _bytes(b))
    nan = math.nan
    return TensorDiff(name, tuple(a.shape), _dtype(a), _dtype(b), 0.0 if same else nan, 0.0 if same else nan, None, nan, nan)


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)


def _norms_and_dot(a: torch.Tensor, b: torch.Tensor, delta: torch.Tensor) -> tuple[float, float, float, float]:
    if a.numel() == 0:
        return 0.0, 0.0, 0.0, 0.0
    norm = torch.linalg.vector_norm
    return float(norm(a)), float(norm(b)), float(norm(delta)), float(torch.dot(a, b))


def _groups(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[object, ...]]:
    """name -> identity of the view it names (same key: one tied tensor)."""
    out: dict[str, tuple[object, ...]] = {}
    for name, t in tensors.items():
        try:
            storage = t.untyped_storage()
            out[name] = (storage.data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype) if storage.nbytes() else (name,)
        except (RuntimeError, NotImplementedError):
            out[name] = (name,)
    return out


def _tied_only(
    names: list[str], side: dict[str, torch.Tensor], other: dict[str, torch.Tensor], groups: dict[str, tuple[object, ...]]
) -> dict[str, str]:
    """Of ``names`` (on ``side`` only), those tied there to a name ``other`` has too: -> that name."""
    if not names:
        return {}
    common: dict[tuple[object, ...], str] = {}
    for name in side:
        if name in other:
            common.setdefault(groups[name], name)
    return {name: common[groups[name]] for name in names if groups[name] in common}


def diff_state_dicts(
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    bins: int = DEFAULT_DIFF_BINS,
    state: TaskState | None = None,
) -> DiffResult:
    """Compare two state_dicts (name -> tensor) key by key.

    Args:
        a: the reference side (the model, or the first checkpoint).
        b: the other side.
        bins: histogram bins for each Δ (0: no histograms).
        state: progress and cancel.
    """
    state = ensure_state(state)
    result = DiffResult()
    result.only_a = [k for k in a if k not in b]
    result.only_b = [k for k in b if k not in a]
    ga, gb = _groups(a), _groups(b)
    result.tied_only = _tied_only(result.only_a, a, b, ga) | _tied_only(result.only_b, b, a, gb)
    names_of: dict[tuple[object, object], list[str]] = {}  # a tensor tied on both sides: once
    for name in (k for k in a if k in b):
        ta, tb = a[name], b[name]
        if tuple(ta.shape) != tuple(tb.shape) or ta.dtype.is_floating_point != tb.dtype.is_floating_point or ta.is_complex() != tb.is_complex():
            result.mismatched.append(Mismatch(name, tuple(ta.shape), tuple(tb.shape), _dtype(ta), _dtype(tb)))
            continue
        names_of.setdefault((ga[name], gb[name]), []).append(name)
    compared = [names[0] for names in names_of.values()]
    done = _diff_small_ones(compared, a, b, bins, state)
    alone = 0
    for names in names_of.values():
        name = names[0]
        entry = done.get(name)
        if entry is None:
            state.progress((len(done) + alone) / max(1, len(compared)), name)
            entry = diff_tensors(name, a[name], b[name], bins)
            alone += 1
        entry.aliases = tuple(names)
        result.tensors.append(entry)
    state.progress(1.0, f"{len(result.changed)} tensor(s) differ")
    return result


def _diff_small_ones(
    names: list[str], a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], bins: int, state: TaskState
) -> dict[str, TensorDiff]:
    """:func:`diff_tensors` of the small tensors among ``names``, many at a time (``diff_small``)."""
    small = [n for n in names if batchable(a[n], b[n])]
    done: dict[str, TensorDiff] = {}
    for start in range(0, len(small), BATCH_TENSORS):
        batch = small[start : start + BATCH_TENSORS]
        state.progress(start / max(1, len(names)), batch[0])
        for name, numbers in zip(batch, diff_small([(a[n], b[n]) for n in batch], bins), strict=True):
            if numbers is not None:
                ta, tb = a[name], b[name]
                done[name] = TensorDiff(name, tuple(ta.shape), _dtype(ta), _dtype(tb), *numbers)
    return done


@dataclass(frozen=True)
class DiffInputs:
    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    bins: int = DEFAULT_DIFF_BINS


def run_diff(inputs: DiffInputs, state: TaskState | None = None) -> DiffResult:
    """Worker entry point for :func:`diff_state_dicts`."""
    return diff_state_dicts(inputs.a, inputs.b, inputs.bins, state)


def diff_sources(
    a: str,
    b: str,
    trust: bool = False,
    bins: int = DEFAULT_DIFF_BINS,
    state: TaskState | None = None,
    entries: tuple[str | None, str | None] = (None, None),
) -> DiffResult:
    """Diff two sources (files or model specs such as ``demo:mlp``); ``entries``: the weight set
    of each when a checkpoint holds several."""
    from paramscope.core.sources.weights import read_weights

    return diff_state_dicts(read_weights(a, trust, entries[0]), read_weights(b, trust, entries[1]), bins, state)
