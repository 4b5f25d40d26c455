"""One forward and backward pass on a sample input: every gradient, without a training loop.

:func:`run_backward` is the ``run(inputs, state)`` style function a GUI worker calls. It

- builds the input (an :class:`~paramscope.core.inputs.InputSpec`, a spec string or tensors),
  runs the forward, a loss from :mod:`paramscope.core.losses` and ``loss.backward()``;
- replaces ``.grad`` (default: as if ``zero_grad(set_to_none=True)`` ran first) or adds to it
  (``accumulate=True``: exactly ``grad += new`` as PyTorch's AccumulateGrad does);
- records, for a parameter used in several places (the tutorial's ``Sequential(linear, linear)``,
  a head tied to an embedding), the gradient contributed by each use: the parts sum to the total;
- records signal propagation (:mod:`paramscope.core.signal`);
- returns as soon as ``.grad`` is written. Each gradient's statistics, histogram, per-use parts
  and dead rows, and the diagnostics, are computed when first read (or all at once by
  :meth:`BackwardResult.summarize`, as the GUI worker does), like the weight statistics: the
  pass costs what a plain forward/backward costs.

Guarantees: train/eval flags, buffers (BatchNorm running statistics) and hooks are restored
afterwards, even on error; if the forward or the loss raises, parameters and ``.grad`` are left
bit-identical and a :class:`ForwardError` names the innermost module that was running. If the
backward itself raises, parameters are unchanged; accumulating, ``.grad`` are as before;
replacing, they are None, as ``zero_grad(set_to_none=True)`` leaves them (replacing lets the
previous gradients go before backward, as the plain loop does: holding them too doubled the
gradients' memory). The global RNG is not consumed (dropout draws from a forked, seeded RNG). A
summary describes the gradients as this backward left them: read after ``.grad`` or the weight
changed in place, it raises :class:`StaleGradientError` rather than describe other numbers.

How per-use parts work: during the forward, a pre-hook on each module swaps each of its
parameters for an alias ``p[...]`` for the duration of that call (restored by the matching
post-hook or, on error, in ``finally``). Gradients flow through the alias into ``p`` exactly as
they would into ``p`` itself, so ``.grad`` is PyTorch's. Before backward, a walk of the autograd
graph finds the parameters used several times; tensor hooks on their aliases keep each use's
gradient by reference (no copy). One use (the last called) gets no hook, so that autograd sums
the others into its gradient in place as it does without hooks: its part is the total minus the
others'. Uses the hooks cannot see (a parent reading a child's parameter directly, RNNs reading
their flat weight list) show as one "(direct use)" part, the rest of the total; then every use
through a module call is hooked.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from paramscope.core.diagnostics import ERROR, INFO, WARNING, Diagnostic
from paramscope.core.errors import ParamscopeError
from paramscope.core.inputs import InputSpec, parse_input_spec
from paramscope.core.losses import compute_loss, differentiable_leaves, get_loss, tensor_leaves
from paramscope.core.signal import SignalPoint, SignalRecorder
from paramscope.core.tasks import TaskState, ensure_state
from paramscope.core.tensor_stats import (
    Histogram,
    TensorStats,
    data_problem,
    tensor_stats,
    tensor_summary,
)

# The autograd node that writes a leaf's .grad (its ``variable`` is the leaf).
_ACCUMULATE_GRAD = torch._C._functions.AccumulateGrad
ROOT_LABEL = "(root)"
DIRECT_USE = "(direct use)"
VALUES_LIMIT = 256  # keep a CPU copy of gradients this small, for value grids
# Rows of these weights are units (output features/channels): an all-zero row is a dead unit.
# Elsewhere (embeddings, position tables) untouched rows are expected and not reported.
_UNIT_MODULES = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd)


class BackwardError(ParamscopeError):
    """Backward could not run; the model and its gradients are as they were."""


class BackwardUnavailable(BackwardError):
    """The source has no forward (e.g. a bare state_dict)."""


class ForwardError(BackwardError):
    """The forward raised; ``module`` is the innermost module that was running."""

    def __init__(self, message: str, module: str, type_name: str, original: BaseException) -> None:
        super().__init__(message)
        self.module = module
        self.type_name = type_name
        self.original = original


# --- results ------------------------------------------------------------------------------------


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


class StaleGradientError(BackwardError):
    """A gradient (or weight) changed in place before this result's summary of it was read."""


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
    source: GradientSummary | _GradientSource = field(repr=False)

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


# --- gradient summaries, computed on first read -------------------------------------------------


@dataclass
class _UsePart:
    """One use's gradient as the backward produced it (no copy); None: derived afterwards."""

    module: str
    grad: torch.Tensor | None
    version: int = 0  # of ``grad`` when autograd handed it over


def _version(tensor: torch.Tensor) -> int:
    try:
        return tensor._version
    except RuntimeError:  # e.g. inference tensors have no version counter
        return -1


class _GradientSource:
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
        uses: list[_UsePart],
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
        self._versions = kept + [(t, _version(t)) for t in watched]
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
        if all(_version(t) == v for t, v in self._versions):
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
_PENDING: weakref.WeakSet[_GradientSource] = weakref.WeakSet()
_PENDING_LOCK = threading.Lock()


def _settle_pending() -> None:
    with _PENDING_LOCK:
        sources = list(_PENDING)
    for source in sources:
        with contextlib.suppress(StaleGradientError):
            source.summary()


# --- recording hooks ----------------------------------------------------------------------------


@dataclass
class _Use:
    name: str  # module call name
    view: torch.Tensor
    grad: torch.Tensor | None = None  # the gradient itself, not a copy
    reached: bool = False  # on the loss's graph (found by count_uses)
    fired: bool = False  # the hook saw a gradient
    derived: bool = False  # no hook: its part is the total minus the other uses
    version: int = 0  # of ``grad`` when kept


class _Recorder:
    """Forward pre/post hooks: the module stack (for errors), per-use views, signal."""

    def __init__(self, model: nn.Module, record_parts: bool, record_signal: bool) -> None:
        self.model = model
        self.record_parts = record_parts
        self.signal = SignalRecorder() if record_signal else None
        # One walk of the module tree per run: each walk of a large model is not free.
        self.named = list(model.named_modules(remove_duplicate=False))
        self.modules = list({id(m): m for _, m in self.named}.values())
        self.leaf_ids = {id(m) for m in self.modules if SignalRecorder.is_leaf(m)}
        self.names: dict[int, list[str]] = {}
        for name, module in self.named:
            self.names.setdefault(id(module), []).append(name or ROOT_LABEL)
        self.calls: dict[int, int] = {}
        self.stack: list[tuple[int, int, str, str]] = []  # (module id, call id, name, type)
        self.swaps: dict[int, list[tuple[nn.Module, str, torch.Tensor]]] = {}
        self.originals: dict[tuple[int, str], nn.Parameter] = {}
        self.uses: dict[int, list[_Use]] = {}
        self.multi_ids: set[int] = set()  # parameters used several times: parts are kept
        self.direct_edges: dict[int, int] = {}  # uses no module call saw, per parameter
        self._viewable_ids: dict[int, bool] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.notes: list[str] = []
        self._ids = itertools.count()

    def install(self) -> None:
        for module in self.modules:
            try:
                self.handles.append(module.register_forward_pre_hook(self._pre))
                self.handles.append(module.register_forward_hook(self._post))
            except (RuntimeError, AttributeError, TypeError) as exc:  # e.g. TorchScript modules
                self.notes.append(
                    f"{type(module).__name__} takes no forward hooks ({_one_line(exc, 120)}): "
                    "no per-use parts, signal propagation or module names in errors"
                )
                break

    def remove(self) -> None:
        """Remove every hook and undo every parameter swap still in place (after an error)."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        for call_id in sorted(self.swaps, reverse=True):
            self._restore(call_id)

    def _call_name(self, module: nn.Module) -> str:
        names = self.names.get(id(module), [type(module).__name__])
        index = self.calls.get(id(module), 0)
        self.calls[id(module)] = index + 1
        if index < len(names):  # the same module under several names: i-th call, i-th name
            return names[index]
        return f"{names[0]} (call {index + 1})"

    def _pre(self, module: nn.Module, args: object) -> None:
        name = self._call_name(module)
        call_id = next(self._ids)
        self.stack.append((id(module), call_id, name, type(module).__name__))
        if self.record_parts and torch.is_grad_enabled():
            self._swap_parameters(module, call_id, name)

    def _swap_parameters(self, module: nn.Module, call_id: int, name: str) -> None:
        swapped: list[tuple[nn.Module, str, torch.Tensor]] = []
        for local, current in list(module._parameters.items()):
            if current is None:
                continue
            if isinstance(current, nn.Parameter):
                self.originals[(id(module), local)] = current
                real = current
            else:  # a re-entrant call: the first call's view is in place
                real = self.originals.get((id(module), local))  # type: ignore[assignment]
                if real is None:
                    continue
            if not self._viewable(real):
                continue
            # An alias: its backward hands the gradient on as is (view_as's reshape makes a
            # view of it, and autograd then cannot sum a tied weight's uses in place).
            view = real[...]
            self.uses.setdefault(id(real), []).append(_Use(name, view))
            module._parameters[local] = view  # bypasses __setattr__'s Parameter check on purpose
            swapped.append((module, local, current))
        if swapped:
            self.swaps[call_id] = swapped

    def _viewable(self, param: nn.Parameter) -> bool:
        """Whether uses of ``param`` are seen through views (checked once per run)."""
        known = self._viewable_ids.get(id(param))
        if known is None:
            known = param.requires_grad and data_problem(param) is None
            self._viewable_ids[id(param)] = known
        return known

    @staticmethod
    def _keep_part(use: _Use) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            # Kept by reference: autograd never adds into a buffer someone else references.
            kept = grad.detach()
            use.fired = True
            use.grad = kept if use.grad is None else use.grad + kept
            use.version = _version(use.grad)  # checked when the part is read

        return hook

    def parts_of(self, param_id: int) -> list[_UsePart]:
        """The uses of one parameter that received a gradient, in forward order."""
        uses = self.uses.get(param_id, []) if param_id in self.multi_ids else []
        return [
            _UsePart(use.name, None if use.derived else use.grad, use.version)
            for use in uses
            if use.fired or use.derived
        ]

    def count_uses(self, loss: torch.Tensor) -> None:
        """Walk the autograd graph: parameters reached by two or more edges keep per-use parts.

        Counting edges into each parameter's AccumulateGrad node also finds uses no module call
        saw (a parent reading ``self.child.weight`` directly, an RNN's flat weight list). Then
        hooks the views of those parameters: their per-use gradients are kept during backward.
        """
        # Nodes are kept referenced while their ids are in use: a node's Python object can be
        # freed once dropped (torch 2.11 does), and a later node's object may reuse its id.
        view_uses = [(use.view.grad_fn, use) for uses in self.uses.values() for use in uses]
        view_nodes = {id(fn): (fn, use) for fn, use in view_uses if fn is not None}
        edges: dict[int, int] = {}
        seen: dict[int, object] = {}
        stack = [loss.grad_fn] if loss.grad_fn is not None else []
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            for child, _ in node.next_functions:
                if child is None:
                    continue
                if type(child) is _ACCUMULATE_GRAD:
                    variable = id(child.variable)
                    edges[variable] = edges.get(variable, 0) + 1
                    self.direct_edges[variable] = self.direct_edges.get(variable, 0) + 1
                elif id(child) in view_nodes:
                    # one use through a module call: the view's own edge leads to the parameter
                    if id(child) not in seen:
                        seen[id(child)] = child
                        view_nodes[id(child)][1].reached = True
                        for grandchild, _ in child.next_functions:
                            if type(grandchild) is _ACCUMULATE_GRAD:
                                variable = id(grandchild.variable)
                                edges[variable] = edges.get(variable, 0) + 1
                else:
                    stack.append(child)
        self.multi_ids.update(pid for pid, count in edges.items() if count > 1)
        self._hook_uses()

    def _hook_uses(self) -> None:
        """Tensor hooks on the views of parameters used several times (others need none).

        Without direct uses the parts sum to the total, so one use (the last called, which
        backward reaches first) gets no hook: autograd sums the others into its gradient in
        place, as it does without hooks (a gradient a hook saw is never summed into in place),
        and its part is the total minus the others'.
        """
        for param_id in self.multi_ids:
            uses = [use for use in self.uses.get(param_id, []) if use.reached]
            if uses and self.direct_edges.get(param_id, 0) == 0:
                uses[-1].derived = True
                uses = uses[:-1]
            for use in uses:
                use.view.register_hook(self._keep_part(use))

    def _restore(self, call_id: int) -> None:
        for module, local, previous in reversed(self.swaps.pop(call_id, [])):
            module._parameters[local] = previous

    def _post(self, module: nn.Module, args: object, output: object) -> None:
        # Pop up to this module's call (a forward that swallowed a child's error leaves extras).
        while self.stack:
            module_id, call_id, name, _ = self.stack.pop()
            self._restore(call_id)
            if module_id == id(module):
                break
        else:
            return
        if self.signal is not None and id(module) in self.leaf_ids:
            self.signal.on_output(name, module, output)

    @property
    def innermost(self) -> tuple[str, str]:
        if not self.stack:
            return ROOT_LABEL, type(self.model).__name__
        _, _, name, type_name = self.stack[-1]
        return name, type_name


# --- helpers ------------------------------------------------------------------------------------


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _named_parameters(
    named_modules: list[tuple[str, nn.Module]],
) -> dict[int, tuple[nn.Parameter, list[str]]]:
    """Each parameter once, with all its names: ``named_parameters(remove_duplicate=False)``
    grouped, from an existing walk of the modules."""
    found: dict[int, tuple[nn.Parameter, list[str]]] = {}
    for prefix, module in named_modules:
        for local, param in module._parameters.items():
            if param is None:
                continue
            name = f"{prefix}.{local}" if prefix else local
            if id(param) in found:
                found[id(param)][1].append(name)
            else:
                found[id(param)] = (param, [name])
    return found


def _model_placement(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    device = torch.device("cpu")
    dtype = None
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if data_problem(tensor) is not None and not isinstance(
            tensor, nn.parameter.UninitializedTensorMixin
        ):
            continue
        device = tensor.device
        if tensor.is_floating_point():
            dtype = tensor.dtype
            break
    return device, dtype


def make_inputs(
    model: nn.Module,
    inputs: InputSpec | str | torch.Tensor | Sequence[torch.Tensor],
    seed: int | None,
) -> tuple[tuple[torch.Tensor, ...], str]:
    """The positional input tensors for ``model`` (on its device, floats in its dtype) and a
    description (keyword inputs: :func:`make_call_inputs`)."""
    args, kwargs, text = make_call_inputs(model, inputs, seed)
    return args + tuple(kwargs.values()), text


def make_call_inputs(
    model: nn.Module,
    inputs: InputSpec | str | torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    seed: int | None,
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor], str]:
    """The forward's positional and keyword tensors (on the model's device, floats in its
    dtype) and a description."""
    if isinstance(inputs, str):
        inputs = parse_input_spec(inputs)
    if isinstance(inputs, InputSpec):
        device, dtype = _model_placement(model)
        args, kwargs = inputs.make_call(seed, device=device, float_dtype=dtype)
        return args, kwargs, inputs.text
    if isinstance(inputs, Mapping):
        kwargs = dict(inputs)
        text = "; ".join(f"{k}=tensor{list(t.shape)}" for k, t in kwargs.items())
        return (), kwargs, text
    tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    text = "; ".join(f"tensor{list(t.shape)}" for t in tensors)
    return tensors, {}, text


def zero_grad(model: nn.Module) -> int:
    """Set every parameter's ``.grad`` to None (as before any backward); return how many had one.

    Example:
        >>> net = nn.Linear(2, 1); net(torch.ones(1, 2)).sum().backward()
        >>> zero_grad(net), net.weight.grad
        (2, None)
    """
    cleared = 0
    for param in model.parameters():
        if param.grad is not None:
            cleared += 1
            param.grad = None
    return cleared


def unavailable_reason(source: object) -> str | None:
    """Why ``source`` (an OpenedModel or Session) cannot run forward, or None."""
    if isinstance(source, nn.Module):  # a model's own attributes say nothing about this
        return None
    opened = getattr(source, "opened", source)
    return getattr(opened, "forward_unavailable", None)


def _describe_output(output: object) -> OutputInfo:
    leaves = tuple(
        OutputLeaf(
            path, tuple(t.shape), str(t.dtype).removeprefix("torch."), tensor_stats(t.detach())
        )
        for path, t in tensor_leaves(output)
    )
    return OutputInfo(leaves, type(output).__name__)


class _Snapshot:
    """Training flags and buffer values, put back after the run."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.flags = [(m, m.training) for m in modules]
        self.buffers: list[tuple[nn.Module, str, torch.Tensor, torch.Tensor]] = []
        for module in modules:
            for local, buffer in module._buffers.items():
                if buffer is not None and data_problem(buffer) is None:
                    self.buffers.append((module, local, buffer, buffer.detach().clone()))

    def restore(self) -> None:
        for module, flag in self.flags:
            module.training = flag
        with torch.no_grad():
            for module, local, buffer, copy in self.buffers:
                module._buffers[local] = buffer
                if buffer.shape == copy.shape:
                    buffer.copy_(copy)


# --- the run ------------------------------------------------------------------------------------


def run_backward(
    model: nn.Module | object,
    inputs: InputSpec | str | torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    loss_name: str = "sum",
    *,
    accumulate: bool = False,
    state: TaskState | None = None,
    record_parts: bool = True,
    record_signal: bool = True,
    seed: int | None = 0,
    train: bool | None = None,
    bins: int = 32,
) -> BackwardResult:
    """Run forward, a loss and backward on a sample input; return every gradient.

    Args:
        model: an ``nn.Module``, or an OpenedModel/Session (refused with the reason when its
            source has no forward).
        inputs: an :class:`InputSpec`, a spec string such as ``"rand(2, 4)"``, a tensor, or a
            tuple of tensors (the forward's positional arguments), or a dict of keyword tensors.
            A spec's ``name=...`` items are keyword arguments (``sample=rand(1, 3, 32, 32)``).
        loss_name: ``sum``, ``mean``, ``l2`` or ``cross_entropy``
            (see :mod:`paramscope.core.losses`).
        accumulate: add to existing ``.grad`` as PyTorch does; default replaces it.
        state: progress/cancel; cancelling is possible until gradients are written.
        record_parts: keep the gradient of each use of a parameter used several times.
        record_signal: keep activation/gradient std per leaf layer call.
        seed: seed for random inputs, random labels and the forward's RNG (dropout).
        train: run in train (True) or eval (False) mode; None keeps each module's mode. The
            modes and buffers are restored afterwards either way.
        bins: gradient histogram bins.

    Raises:
        BackwardUnavailable: the source has no forward.
        ForwardError: the forward raised (names the innermost module running).
        BackwardError: the loss or backward failed. Nothing was changed, except that a backward
            that raised while replacing leaves every ``.grad`` None (as ``zero_grad`` would).

    Example:
        >>> linear = nn.Linear(1, 1, bias=False); net = nn.Sequential(linear, linear)
        >>> _ = nn.init.constant_(linear.weight, 3.0)
        >>> result = run_backward(net, "ones(1, 1)")
        >>> result.output.value, float(linear.weight.grad), [p.values.item() for p in result.parameters["0.weight"].parts]
        (9.0, 6.0, [3.0, 3.0])
    """
    model = _module_of(model)
    state = ensure_state(state)
    loss = get_loss(loss_name)  # an unknown name fails before anything runs
    state.progress(0.0, "building inputs")
    tensors, keywords, input_text = make_call_inputs(model, inputs, seed)
    recorder = _Recorder(model, record_parts, record_signal)
    before = _named_parameters(recorder.named)
    had_lazy = _has_lazy(before)
    for param_id, (_, names) in before.items():
        if len(names) > 1:
            recorder.multi_ids.add(param_id)
    snapshot = _Snapshot(recorder.modules)
    try:
        output, loss_tensor, params, old = _forward_backward(
            model,
            tensors,
            keywords,
            loss.name,
            recorder,
            state,
            train=train,
            seed=seed,
            accumulate=accumulate,
        )
    finally:
        recorder.remove()
        snapshot.restore()

    new = {pid: p.grad for pid, (p, _) in params.items()}
    if accumulate:
        _accumulate(params, old, new)
    owners = _owner_types(recorder.modules)
    gradients: dict[str, ParameterGradient] = {}
    for pid, (param, names) in params.items():
        source = _GradientSource(
            names[0], param, new[pid], recorder.parts_of(pid), owners.get(pid, ()), bins
        )
        gradients[names[0]] = ParameterGradient(
            name=names[0],
            aliases=tuple(names),
            shape=None
            if isinstance(param, nn.parameter.UninitializedTensorMixin)
            else tuple(param.shape),
            requires_grad=param.requires_grad,
            received=new[pid] is not None,
            source=source,
        )
    recorder.uses.clear()  # views -> hooks -> recorder is a cycle: free the gradients it holds now
    structure_changed = had_lazy and not _has_lazy(params)
    return BackwardResult(
        output=_describe_output(output),
        loss=float(loss_tensor.detach().double().cpu()),
        loss_name=loss.name,
        inputs=input_text,
        accumulate=accumulate,
        parameters=gradients,
        signal=recorder.signal.points() if recorder.signal is not None else [],
        notes=_notes(recorder, output, structure_changed),
        structure_changed=structure_changed,
    )


def _module_of(source: nn.Module | object) -> nn.Module:
    """The model of an nn.Module, OpenedModel or Session; refused when it has no forward."""
    if isinstance(source, nn.Module):  # the model itself: never its ``.model`` attribute
        return source
    why = unavailable_reason(source)
    if why:
        raise BackwardUnavailable(f"backward unavailable: {why}")
    model = getattr(getattr(source, "opened", source), "model", source)
    if not isinstance(model, nn.Module):
        raise BackwardError(f"backward needs an nn.Module, got {type(model).__name__}")
    return model


def _has_lazy(params: dict[int, tuple[nn.Parameter, list[str]]]) -> bool:
    return any(isinstance(p, nn.parameter.UninitializedTensorMixin) for p, _ in params.values())


def _forward_backward(
    model: nn.Module,
    tensors: tuple[torch.Tensor, ...],
    keywords: dict[str, torch.Tensor],
    loss_name: str,
    recorder: _Recorder,
    state: TaskState,
    *,
    train: bool | None,
    seed: int | None,
    accumulate: bool,
) -> tuple[
    object, torch.Tensor, dict[int, tuple[nn.Parameter, list[str]]], dict[int, torch.Tensor | None]
]:
    """Forward, loss and backward with the recorder's hooks; ``.grad`` holds this run's gradients.

    Returns the output, the loss, the parameters and (``accumulate``) their previous ``.grad``.
    An error before backward changes no ``.grad``. Replacing, the previous ``.grad`` are let go
    before backward as ``zero_grad(set_to_none=True)`` does, so that backward reuses their
    memory (holding them doubled the gradients' memory, and a large model paid for it in fresh
    pages: a quarter of the run): a backward that raises then leaves every ``.grad`` None.
    Accumulating, they are kept and back in place after an error. The caller removes the hooks
    and restores the modes.
    """
    device, _ = _model_placement(model)
    rng_devices = [device] if device.type == "cuda" else []
    if train is not None:
        model.train(train)
    recorder.install()
    state.progress(0.1, "forward")
    with torch.random.fork_rng(devices=rng_devices), torch.enable_grad():
        if seed is not None:
            torch.manual_seed(int(seed))
        try:
            output = model(*tensors, **keywords)
        except Exception as exc:
            module, type_name = recorder.innermost
            raise ForwardError(
                f"forward failed in {module} ({type_name}): {type(exc).__name__}: {_one_line(exc)}",
                module,
                type_name,
                exc,
            ) from exc
        finally:
            recorder.remove()  # parameters back in their modules before anything else
        loss_tensor = _loss(output, loss_name, seed)
        if recorder.record_parts:
            recorder.count_uses(loss_tensor)
        state.progress(0.4, "backward")
        # Walked again: the forward may have registered parameters (lazy modules)
        params = _named_parameters(list(model.named_modules(remove_duplicate=False)))
        old = {pid: p.grad for pid, (p, _) in params.items()} if accumulate else {}
        state.check()  # last point where cancelling is possible: nothing written yet
        for param, _ in params.values():
            param.grad = None
        try:
            loss_tensor.backward()
        except BaseException as exc:
            for pid, (param, _) in params.items():
                param.grad = old.get(pid)  # replacing: None, also where backward wrote one
            if isinstance(exc, Exception):
                kept = "left as they were" if accumulate else "cleared (as zero_grad leaves them)"
                raise BackwardError(
                    f"backward failed: {type(exc).__name__}: {_one_line(exc)}; .grad {kept}"
                ) from exc
            raise
    return output, loss_tensor, params, old


def _loss(output: object, loss_name: str, seed: int | None) -> torch.Tensor:
    try:
        loss_tensor = compute_loss(output, loss_name, seed)
    except ParamscopeError:
        raise
    except Exception as exc:
        raise BackwardError(
            f"loss {loss_name} failed: {type(exc).__name__}: {_one_line(exc)}"
        ) from exc
    if not loss_tensor.requires_grad:
        raise BackwardError(
            "the loss does not depend on any parameter that requires grad "
            "(all parameters frozen, or the output is detached)"
        )
    return loss_tensor


def _accumulate(
    params: dict[int, tuple[nn.Parameter, list[str]]],
    old: dict[int, torch.Tensor | None],
    new: dict[int, torch.Tensor | None],
) -> None:
    """Add this run's gradients into the previous ``.grad`` in place, as AccumulateGrad does."""
    if any(old[pid] is not None and new[pid] is not None for pid in params):
        _settle_pending()  # earlier results read their gradients before these change
    with torch.no_grad():
        for pid, (param, _) in params.items():
            previous, added = old[pid], new[pid]
            if previous is not None and added is not None:
                param.grad = previous.add_(added)  # grad += new
            elif previous is not None:
                param.grad = previous


def _notes(recorder: _Recorder, output: object, structure_changed: bool) -> list[str]:
    notes = list(recorder.notes)
    if structure_changed:
        notes.append(
            "lazy parameters were materialized by this forward: their shapes are known now"
        )
    used = {path for path, _ in differentiable_leaves(output)}
    skipped = [path or "output" for path, _ in tensor_leaves(output) if path not in used]
    if skipped:
        notes.append(f"integer outputs left out of the loss: {', '.join(skipped)}")
    return notes


def _owner_types(modules: list[nn.Module]) -> dict[int, tuple[type, ...]]:
    owners: dict[int, set[type]] = {}
    for module in modules:
        for param in module._parameters.values():
            if param is not None:
                owners.setdefault(id(param), set()).add(type(module))
    return {pid: tuple(types) for pid, types in owners.items()}


def _small_copy(tensor: torch.Tensor | None) -> torch.Tensor | None:
    if tensor is None or tensor.numel() > VALUES_LIMIT or data_problem(tensor) is not None:
        return None
    return tensor.detach().to("cpu", copy=True)


def _parts(uses: list[_UsePart], contribution: torch.Tensor | None) -> list[GradPart]:
    """Per-use gradients of one parameter.

    A derived use (see ``_Recorder._keep_part``) gets the total minus the kept uses; without
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


# --- worker entry point -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackwardRequest:
    """Everything :func:`run` needs, so a worker can call ``run(request, state)``."""

    model: object  # nn.Module, OpenedModel or Session
    inputs: InputSpec | str | torch.Tensor | tuple[torch.Tensor, ...] | Mapping[str, torch.Tensor]
    loss: str = "sum"
    accumulate: bool = False
    seed: int | None = 0
    record_parts: bool = True
    record_signal: bool = True
    train: bool | None = None


def run(request: BackwardRequest, state: TaskState | None = None) -> BackwardResult:
    """``run(inputs, state)`` form of :func:`run_backward` for GUI workers, summaries included
    (the GUI thread then only reads them)."""
    result = run_backward(
        request.model,
        request.inputs,
        request.loss,
        accumulate=request.accumulate,
        state=state,
        record_parts=request.record_parts,
        record_signal=request.record_signal,
        seed=request.seed,
        train=request.train,
    )
    return result.summarize(state)
