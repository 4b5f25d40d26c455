"""What one backward returns: the output, every parameter's gradient, and the diagnostics.

A :class:`ParameterGradient`'s statistics, histogram, per-use parts and dead rows are its
summary, computed when first read (:mod:`paramscope.core.backward.grad_summary`), so that the gradients
are usable as soon as backward ends; :meth:`BackwardResult.summarize` computes them all at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from paramscope.core.backward.losses import tensor_leaves
from paramscope.core.backward.signal import SignalPoint
from paramscope.core.model.diagnostics import ERROR, INFO, WARNING, Diagnostic
from paramscope.core.model.tensor_stats import Histogram, TensorStats, tensor_stats
from paramscope.core.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from paramscope.core.backward.grad_summary import GradientSource


@dataclass(frozen=True)
class OutputLeaf:
    path: str  # "" for a plain tensor output, else "[0]", "['logits']", ".hidden", ...
    shape: tuple[int, ...]
    dtype: str
    stats: TensorStats

    @property
    def value(self) -> float | None:
        """The value when the tensor has exactly one element (the tutorial's ``tensor(9.)``)."""
        if self.stats.numel != 1:
            return None
        return self.stats.mean if self.stats.mean is not None else self.stats.min

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "path": self.path,
            "shape": list(self.shape),
            "dtype": self.dtype,
        }
        if self.stats.numel == 1:
            data["value"] = _single_value(self.stats)
        data["stats"] = self.stats.to_dict()
        return data


def _single_value(stats: TensorStats) -> float | None:
    if stats.mean is not None:
        return stats.mean
    if stats.nan:
        return math.nan
    if stats.posinf:
        return math.inf
    if stats.neginf:
        return -math.inf
    return None


@dataclass(frozen=True)
class OutputInfo:
    leaves: tuple[OutputLeaf, ...]
    type_name: str  # type of what forward returned

    @property
    def value(self) -> float | None:
        if len(self.leaves) == 1:
            return self.leaves[0].value
        return None

    def to_dict(self) -> dict[str, object]:
        if len(self.leaves) == 1 and self.leaves[0].path == "":
            data = self.leaves[0].to_dict()
            data.pop("path")
            return data
        return {"type": self.type_name, "leaves": [leaf.to_dict() for leaf in self.leaves]}


@dataclass(frozen=True)
class GradPart:
    """The gradient one use of a parameter contributed (one module call)."""

    module: str
    stats: TensorStats
    values: torch.Tensor | None  # CPU copy when small

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"module": self.module, "stats": self.stats.to_dict()}
        if self.values is not None and self.values.numel() == 1:
            data["value"] = float(self.values.reshape(()))
        return data


@dataclass(frozen=True)
class GradientSummary:
    """What reading one parameter's gradient gives: statistics, histogram, parts, dead rows."""

    grad: TensorStats | None  # None: .grad is None
    histogram: Histogram | None
    weight_norm: float | None
    parts: tuple[GradPart, ...] = ()
    values: torch.Tensor | None = None  # CPU copy of .grad when small
    dead_rows: tuple[int, ...] = ()



@dataclass(frozen=True, eq=False)
class ParameterGradient:
    """One parameter after a backward. ``source`` is its summary, or what computes it on first read.

    The summary (``grad``, ``histogram``, ``weight_norm``, ``parts``, ``values``, ``dead_rows``)
    is computed on first access, from the tensors as the backward left them: so that the
    gradients are usable as soon as backward ends. Reading it after ``.grad`` or the weight was
    changed in place raises :class:`StaleGradientError` (``BackwardResult.summarize()`` first).
    """

    name: str
    aliases: tuple[str, ...]
    shape: tuple[int, ...] | None
    requires_grad: bool
    received: bool  # this run contributed a gradient
    source: GradientSummary | GradientSource = field(repr=False)

    @property
    def summary(self) -> GradientSummary:
        if isinstance(self.source, GradientSummary):
            return self.source
        return self.source.summary()

    @property
    def summarized(self) -> bool:
        """The summary is computed (reading it costs nothing more)."""
        return isinstance(self.source, GradientSummary) or self.source.done

    @property
    def grad(self) -> TensorStats | None:
        return self.summary.grad

    @property
    def histogram(self) -> Histogram | None:
        return self.summary.histogram

    @property
    def weight_norm(self) -> float | None:
        return self.summary.weight_norm

    @property
    def parts(self) -> tuple[GradPart, ...]:
        return self.summary.parts

    @property
    def values(self) -> torch.Tensor | None:
        return self.summary.values

    @property
    def dead_rows(self) -> tuple[int, ...]:
        return self.summary.dead_rows

    @property
    def ratio(self) -> float | None:
        """grad norm / weight norm: the relative step size an SGD step of lr 1 would take."""
        if self.grad is None or self.grad.norm is None or not self.weight_norm:
            return None
        return self.grad.norm / self.weight_norm

    @property
    def max_abs(self) -> float | None:
        if self.grad is None or self.grad.min is None or self.grad.max is None:
            return None
        return max(abs(self.grad.min), abs(self.grad.max))

    def to_dict(self, histogram: bool = True) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name,
            "aliases": list(self.aliases),
            "shape": None if self.shape is None else list(self.shape),
            "requires_grad": self.requires_grad,
            "received": self.received,
            "grad": None,
        }
        if self.grad is not None:
            grad = self.grad.to_dict()
            grad["max_abs"] = self.max_abs
            grad["grad_to_weight"] = self.ratio
            if self.values is not None and self.values.numel() == 1:
                grad["value"] = float(self.values.reshape(()))
            if histogram and self.histogram is not None:
                grad["histogram"] = self.histogram.to_dict()
            data["grad"] = grad
        data["weight_norm"] = self.weight_norm
        if self.parts:
            data["parts"] = [part.to_dict() for part in self.parts]
        if self.dead_rows:
            data["dead_rows"] = list(self.dead_rows)
        return data


@dataclass
class BackwardResult:
    """One run. Gradient summaries and ``diagnostics`` are computed when first read
    (:meth:`summarize` computes them all at once, e.g. in a worker thread)."""

    output: OutputInfo
    loss: float
    loss_name: str
    inputs: str  # the spec text, or the shapes of given tensors
    accumulate: bool
    parameters: dict[str, ParameterGradient]
    signal: list[SignalPoint]
    notes: list[str] = field(default_factory=list)
    structure_changed: bool = False  # lazy parameters were materialized: rebuild the report
    _diagnostics: list[Diagnostic] | None = field(default=None, repr=False, compare=False)

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """Problems visible after backward (reads every gradient's summary)."""
        if self._diagnostics is None:
            self._diagnostics = gradient_diagnostics(self.parameters.values())
        return self._diagnostics

    def summarize(self, state: TaskState | None = None) -> BackwardResult:
        """Compute every gradient summary and the diagnostics now; return ``self``.

        Progress goes from 0.5 to 1 (the second half of a run); cancelling stops the
        summaries only: the gradients are written already.
        """
        state = ensure_state(state)
        gradients = list(self.parameters.values())
        for done, gradient in enumerate(gradients):
            state.progress(0.5 + 0.5 * done / len(gradients), "gradient statistics")
            _ = gradient.summary
        _ = self.diagnostics
        return self

    def to_dict(self, histogram: bool = False) -> dict[str, object]:
        return {
            "inputs": self.inputs,
            "output": self.output.to_dict(),
            "loss": self.loss,
            "loss_name": self.loss_name,
            "accumulate": self.accumulate,
            "parameters": [p.to_dict(histogram) for p in self.parameters.values()],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "signal": [s.to_dict() for s in self.signal],
            "notes": list(self.notes),
        }


def describe_output(output: object) -> OutputInfo:
    """Every tensor the forward returned, with its statistics."""
    leaves = tuple(
        OutputLeaf(
            path, tuple(t.shape), str(t.dtype).removeprefix("torch."), tensor_stats(t.detach())
        )
        for path, t in tensor_leaves(output)
    )
    return OutputInfo(leaves, type(output).__name__)


def _rows_text(rows: tuple[int, ...], limit: int = 8) -> str:
    shown = ", ".join(map(str, rows[:limit]))
    return shown + (f", ... ({len(rows)} in all)" if len(rows) > limit else "")


def gradient_diagnostics(gradients: object) -> list[Diagnostic]:
    """Problems visible after backward: NaN/Inf, no gradient, dead rows, zero and frozen."""
    found: list[Diagnostic] = []
    for g in gradients:  # type: ignore[attr-defined]
        assert isinstance(g, ParameterGradient)
        if not g.requires_grad:
            found.append(
                Diagnostic(
                    INFO,
                    "frozen",
                    (g.name,),
                    f"{g.name} is frozen (requires_grad=False): it gets no gradient",
                )
            )
            continue
        if g.grad is not None and g.grad.nonfinite:
            found.append(
                Diagnostic(
                    ERROR,
                    "nonfinite_grad",
                    (g.name,),
                    f"{g.name}: gradient has {g.grad.nan} NaN and {g.grad.inf} Inf values",
                )
            )
        if not g.received:
            found.append(
                Diagnostic(
                    WARNING,
                    "no_grad",
                    (g.name,),
                    f"{g.name} received no gradient: it is unused by the forward or not on the path to the loss",
                )
            )
        elif g.grad is not None and g.grad.zero_fraction == 1.0:
            found.append(
                Diagnostic(WARNING, "zero_grad", (g.name,), f"{g.name}: gradient is entirely zero")
            )
        if g.dead_rows and g.shape:
            found.append(
                Diagnostic(
                    WARNING,
                    "dead_rows",
                    (g.name,),
                    f"{g.name}: gradient rows {_rows_text(g.dead_rows)} of {g.shape[0]} are all zero "
                    "(dead units: e.g. a ReLU that never fired on this input)",
                )
            )
    return found
