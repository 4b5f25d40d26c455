"""Each gradient's summary after a backward, computed when first read and never from changed tensors.

A :class:`GradientSource` holds one parameter's ``.grad``, this run's contribution and the
gradient of each of its uses by reference (no copy), with their version counters: its summary
(statistics, histogram, per-use parts, dead rows) is computed on first read, and raises
:class:`~paramscope.core.backward.backward_errors.StaleGradientError` if any of them changed in place
since. The sources not read yet are registered, so that an accumulating run can have them read
before it adds into ``.grad`` in place.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from paramscope.core.backward.backward_errors import StaleGradientError
from paramscope.core.backward.grad_results import GradientSummary, GradPart
from paramscope.core.model.tensor_stats import data_problem, tensor_stats, tensor_summary

DIRECT_USE = "(direct use)"
VALUES_LIMIT = 256  # keep a CPU copy of gradients this small, for value grids
# Rows of these weights are units (output features/channels): an all-zero row is a dead unit.
# Elsewhere (embeddings, position tables) untouched rows are expected and not reported.
_UNIT_MODULES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


@dataclass
class UsePart:
    """One use's gradient as the backward produced it (no copy); None: derived afterwards."""

    module: str
    grad: torch.Tensor | None
    version: int = 0  # of ``grad`` when autograd handed it over


def tensor_version(tensor: torch.Tensor) -> int:
    """``tensor._version`` (bumped by every in-place change), or -1 where there is none."""
    try:
        return tensor._version
    except RuntimeError:  # e.g. inference tensors have no version counter
        return -1


class GradientSource:
    """The tensors one parameter's summary is computed from, checked for in-place changes.

    Holds ``.grad``, this run's contribution and the per-use gradients by reference, with their
    version counters: a summary read after any of them (or the weight) changed in place would
    describe other numbers, so it raises instead. The references are dropped once summarized.
    """

    def __init__(
        self,
        name: str,
        param: nn.Parameter,
        contribution: torch.Tensor | None,
        uses: list[UsePart],
        owners: tuple[type, ...],
        bins: int,
    ) -> None:
        self.name = name
        self._param: nn.Parameter | None = param
        self._grad = param.grad
        self._contribution = contribution
        self._uses = uses
        self._owners = owners
        self._bins = bins
        watched = [param] + [t for t in (self._grad, contribution) if t is not None]
        kept = [(use.grad, use.version) for use in uses if use.grad is not None]
        self._versions = kept + [(t, tensor_version(t)) for t in watched]
        self._summary: GradientSummary | None = None
        self._error: StaleGradientError | None = None
        self._lock = threading.Lock()
        with _PENDING_LOCK:
            _PENDING.add(self)

    @property
    def done(self) -> bool:
        return self._summary is not None or self._error is not None

    def summary(self) -> GradientSummary:
        with self._lock:
            if self._summary is None and self._error is None:
                self._error = self._stale()
                if self._error is None:
                    self._summary = self._compute()
                self._release()
            if self._error is not None:
                raise self._error
            assert self._summary is not None
            return self._summary

    def _stale(self) -> StaleGradientError | None:
        if all(tensor_version(t) == v for t, v in self._versions):
            return None
        return StaleGradientError(
            f"{self.name}: the gradient or weight changed in place after this backward; "
            "read the result's statistics (or call summarize()) before changing them"
        )

    def _compute(self) -> GradientSummary:
        param, grad = self._param, self._grad
        assert param is not None
        stats = histogram = None
        dead: tuple[int, ...] = ()
        if grad is not None:
            stats, histogram = tensor_summary(grad, bins=self._bins)
            dead = _dead_rows(grad, self._owners)
        return GradientSummary(
            grad=stats,
            histogram=histogram,
            weight_norm=tensor_stats(param.detach()).norm if param.numel() else None,
            parts=tuple(_parts(self._uses, self._contribution)),
            values=_small_copy(grad),
            dead_rows=dead,
        )

    def _release(self) -> None:
        self._param = self._grad = self._contribution = None
        self._uses = []
        self._versions = []
        with _PENDING_LOCK:
            _PENDING.discard(self)


# Sources not summarized yet: an accumulating run summarizes them before adding into .grad in
# place (the earlier result would otherwise see the sum, or be stale).
_PENDING: weakref.WeakSet[GradientSource] = weakref.WeakSet()
_PENDING_LOCK = threading.Lock()


def settle_pending() -> None:
    """Read every summary not read yet (before an accumulating run changes ``.grad`` in place)."""
    with _PENDING_LOCK:
        sources = list(_PENDING)
    for source in sources:
        with contextlib.suppress(StaleGradientError):
            source.summary()


def _small_copy(tensor: torch.Tensor | None) -> torch.Tensor | None:
    if tensor is None or tensor.numel() > VALUES_LIMIT or data_problem(tensor) is not None:
        return None
    return tensor.detach().to("cpu", copy=True)


def _parts(uses: list[UsePart], contribution: torch.Tensor | None) -> list[GradPart]:
    """Per-use gradients of one parameter.

    A derived use (see ``Recorder._hook_uses`` in :mod:`paramscope.core.backward.backward_hooks`) gets the total minus the kept uses; without
    one, that rest is a "(direct use)" part when the hooks missed a use.
    """
    if contribution is None or not uses or (len(uses) == 1 and uses[0].grad is None):
        return []
    with torch.no_grad():
        rest = contribution.clone()  # what the kept uses do not explain
        for use in uses:
            if use.grad is not None:
                rest.sub_(use.grad)
        tensors = [(use.module, rest if use.grad is None else use.grad) for use in uses]
        derived = any(use.grad is None for use in uses)
        if not derived and rest.numel() and _max_abs(rest) > 1e-6 * _max_abs(contribution) + 1e-30:
            tensors.append((DIRECT_USE, rest))
    if len(tensors) < 2:
        return []
    return [GradPart(name, tensor_stats(t), _small_copy(t)) for name, t in tensors]


def _max_abs(tensor: torch.Tensor) -> float:
    """max |x| in one read, without allocating |x| (complex values: their magnitudes)."""
    if tensor.is_complex():
        return float(tensor.abs().max())
    lo, hi = torch.aminmax(tensor)
    return max(abs(float(lo)), abs(float(hi)))


def _dead_rows(grad: torch.Tensor, owners: tuple[type, ...]) -> tuple[int, ...]:
    if grad.dim() < 2 or grad.is_sparse or not owners or grad.numel() == 0:
        return ()
    if not all(issubclass(t, _UNIT_MODULES) for t in owners):
        return ()
    # max |g| per row: a third of the time of (g == 0).all(1); NaN rows are not dead either way
    rows = grad.detach().reshape(grad.shape[0], -1).abs().amax(dim=1) == 0
    if bool(rows.all()):  # an all-zero gradient is reported as such, not as dead rows
        return ()
    return tuple(int(i) for i in torch.nonzero(rows).reshape(-1).tolist())

