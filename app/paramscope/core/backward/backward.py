"""One forward and backward pass on a sample input: every gradient, without a training loop.

:func:`run_backward` (and :func:`run`, the ``run(request, state)`` form a GUI worker calls)

- builds the input (an :class:`~paramscope.core.backward.input_specs.InputSpec`, a spec string or
  tensors; see :mod:`paramscope.core.backward.inputs`), runs the forward, a loss from
  :mod:`paramscope.core.backward.losses` and ``loss.backward()``;
- replaces ``.grad`` (default: as if ``zero_grad(set_to_none=True)`` ran first) or adds to it
  (``accumulate=True``: exactly ``grad += new`` as PyTorch's AccumulateGrad does);
- records, for a parameter used in several places (the tutorial's ``Sequential(linear, linear)``,
  a head tied to an embedding), the gradient contributed by each use: the parts sum to the total
  (how: :mod:`paramscope.core.backward.backward_hooks`);
- records signal propagation (:mod:`paramscope.core.backward.signal`);
- returns as soon as ``.grad`` is written (a :class:`~paramscope.core.backward.grad_results.BackwardResult`).
  Each gradient's statistics, histogram, per-use parts and dead rows, and the diagnostics, are
  computed when first read (:mod:`paramscope.core.backward.grad_summary`), or all at once by
  ``BackwardResult.summarize`` as the GUI worker does, like the weight statistics: the pass
  costs what a plain forward/backward costs.

Guarantees: train/eval flags, buffers (BatchNorm running statistics) and hooks are restored
afterwards, even on error; if the forward or the loss raises, parameters and ``.grad`` are left
bit-identical and a :class:`ForwardError` names the innermost module that was running. If the
backward itself raises, parameters are unchanged; accumulating, ``.grad`` are as before;
replacing, they are None, as ``zero_grad(set_to_none=True)`` leaves them (replacing lets the
previous gradients go before backward, as the plain loop does: holding them too doubled the
gradients' memory). The global RNG is not consumed (dropout draws from a forked, seeded RNG). A
summary describes the gradients as this backward left them: read after ``.grad`` or the weight
changed in place, it raises :class:`StaleGradientError` rather than describe other numbers.

Per-use parts: one use (the last called) gets no hook, so that autograd sums the others into its
gradient in place as it does without hooks: its part is the total minus the others'. Uses the
hooks cannot see (a parent reading a child's parameter directly, RNNs reading their flat weight
list) show as one "(direct use)" part, the rest of the total; then every use through a module
call is hooked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from paramscope.core.backward.backward_errors import (
    BackwardError,
    BackwardUnavailable,
    ForwardError,
    one_line,
)
from paramscope.core.backward.backward_hooks import Recorder
from paramscope.core.backward.grad_results import (
    BackwardResult,
    ParameterGradient,
    describe_output,
)
from paramscope.core.backward.grad_summary import GradientSource, settle_pending
from paramscope.core.backward.input_specs import InputSpec
from paramscope.core.backward.inputs import make_call_inputs, model_placement
from paramscope.core.backward.losses import (
    compute_loss,
    differentiable_leaves,
    get_loss,
    tensor_leaves,
)
from paramscope.core.errors import ParamscopeError
from paramscope.core.model.tensor_stats import data_problem
from paramscope.core.tasks import TaskState, ensure_state

# Re-exported for gui/backward_panel.py, which imports it from here: BackwardResult.
__all__ = ["BackwardRequest", "BackwardResult", "run", "run_backward", "unavailable_reason", "zero_grad"]

Inputs = InputSpec | str | torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
# Each parameter once, by id: the parameter and all its names.
NamedParameters = dict[int, tuple[nn.Parameter, list[str]]]


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
    """``run(request, state)`` form of :func:`run_backward` for GUI workers, summaries included
    (the GUI thread then only reads them)."""
    state = ensure_state(state)
    return _run(request, state, bins=32).summarize(state)


def run_backward(
    model: nn.Module | object,
    inputs: Inputs,
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
        loss_name: ``sum``, ``mean``, ``l2`` or ``cross_entropy`` (:mod:`paramscope.core.backward.losses`).
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
    request = BackwardRequest(model, inputs, loss_name, accumulate, seed, record_parts, record_signal, train)  # type: ignore[arg-type]
    return _run(request, ensure_state(state), bins)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class _Pass:
    """What forward and backward left: the output, the loss, the parameters (walked after the
    forward) and, accumulating, their ``.grad`` from before."""

    output: object
    loss: torch.Tensor
    params: NamedParameters
    old: dict[int, torch.Tensor | None]


def _run(request: BackwardRequest, state: TaskState, bins: int) -> BackwardResult:
    model = _module_of(request.model)
    loss = get_loss(request.loss)  # an unknown name fails before anything runs
    state.progress(0.0, "building inputs")
    tensors, keywords, input_text = make_call_inputs(model, request.inputs, request.seed)
    recorder = Recorder(model, request.record_parts, request.record_signal)
    before = _named_parameters(recorder.named)
    had_lazy = _has_lazy(before)  # now: materializing changes the parameters' class in place
    recorder.multi_ids.update(pid for pid, (_, names) in before.items() if len(names) > 1)
    snapshot = _Snapshot(recorder.modules)
    try:
        done = _forward_backward(model, tensors, keywords, loss.name, recorder, state, request)
    finally:
        recorder.remove()
        snapshot.restore()
    new = {pid: p.grad for pid, (p, _) in done.params.items()}
    if request.accumulate:
        _accumulate(done.params, done.old, new)
    gradients = _gradients(done.params, new, recorder, bins)
    recorder.uses.clear()  # views -> hooks -> recorder is a cycle: free the gradients it holds now
    structure_changed = had_lazy and not _has_lazy(done.params)
    return BackwardResult(
        output=describe_output(done.output),
        loss=float(done.loss.detach().double().cpu()),
        loss_name=loss.name,
        inputs=input_text,
        accumulate=request.accumulate,
        parameters=gradients,
        signal=recorder.signal.points() if recorder.signal is not None else [],
        notes=_notes(recorder, done.output, structure_changed),
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


def _has_lazy(params: NamedParameters) -> bool:
    return any(isinstance(p, nn.parameter.UninitializedTensorMixin) for p, _ in params.values())


def _forward_backward(
    model: nn.Module,
    tensors: tuple[torch.Tensor, ...],
    keywords: dict[str, torch.Tensor],
    loss_name: str,
    recorder: Recorder,
    state: TaskState,
    request: BackwardRequest,
) -> _Pass:
    """Forward, loss and backward with the recorder's hooks; ``.grad`` holds this run's gradients.

    An error before backward changes no ``.grad``; for one in backward see :func:`_backward`.
    The caller removes the hooks and restores the modes.
    """
    device, _ = model_placement(model)
    rng_devices = [device] if device.type == "cuda" else []
    if request.train is not None:
        model.train(request.train)
    recorder.install()
    state.progress(0.1, "forward")
    with torch.random.fork_rng(devices=rng_devices), torch.enable_grad():
        if request.seed is not None:
            torch.manual_seed(int(request.seed))
        output = _forward(model, tensors, keywords, recorder)
        loss_tensor = _loss(output, loss_name, request.seed)
        if recorder.record_parts:
            recorder.count_uses(loss_tensor)
        state.progress(0.4, "backward")
        # Walked again: the forward may have registered parameters (lazy modules)
        params = _named_parameters(list(model.named_modules(remove_duplicate=False)))
        old = {pid: p.grad for pid, (p, _) in params.items()} if request.accumulate else {}
        state.check()  # last point where cancelling is possible: nothing written yet
        _backward(loss_tensor, params, old, request.accumulate)
    return _Pass(output, loss_tensor, params, old)


def _forward(
    model: nn.Module, tensors: tuple[torch.Tensor, ...], keywords: dict[str, torch.Tensor], recorder: Recorder
) -> object:
    """The model's output; :class:`ForwardError` names the innermost module if it raised."""
    try:
        return model(*tensors, **keywords)
    except Exception as exc:
        module, type_name = recorder.innermost
        raise ForwardError(
            f"forward failed in {module} ({type_name}): {type(exc).__name__}: {one_line(exc)}",
            module,
            type_name,
            exc,
        ) from exc
    finally:
        recorder.remove()  # parameters back in their modules before anything else


def _backward(
    loss_tensor: torch.Tensor, params: NamedParameters, old: dict[int, torch.Tensor | None], accumulate: bool
) -> None:
    """``loss.backward()`` into cleared ``.grad``.

    Replacing, the previous ``.grad`` are let go before backward as ``zero_grad(set_to_none=True)``
    does, so that backward reuses their memory (holding them doubled the gradients' memory, and
    a large model paid for it in fresh pages: a quarter of the run): a backward that raises then
    leaves every ``.grad`` None. Accumulating, ``old`` keeps them, and they are back in place
    after an error.
    """
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
                f"backward failed: {type(exc).__name__}: {one_line(exc)}; .grad {kept}"
            ) from exc
        raise


def _loss(output: object, loss_name: str, seed: int | None) -> torch.Tensor:
    try:
        loss_tensor = compute_loss(output, loss_name, seed)
    except ParamscopeError:
        raise
    except Exception as exc:
        raise BackwardError(
            f"loss {loss_name} failed: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    if not loss_tensor.requires_grad:
        raise BackwardError(
            "the loss does not depend on any parameter that requires grad "
            "(all parameters frozen, or the output is detached)"
        )
    return loss_tensor


def _accumulate(
    params: NamedParameters,
    old: dict[int, torch.Tensor | None],
    new: dict[int, torch.Tensor | None],
) -> None:
    """Add this run's gradients into the previous ``.grad`` in place, as AccumulateGrad does."""
    if any(old[pid] is not None and new[pid] is not None for pid in params):
        settle_pending()  # earlier results read their gradients before these change
    with torch.no_grad():
        for pid, (param, _) in params.items():
            previous, added = old[pid], new[pid]
            if previous is not None and added is not None:
                param.grad = previous.add_(added)  # grad += new
            elif previous is not None:
                param.grad = previous


def _notes(recorder: Recorder, output: object, structure_changed: bool) -> list[str]:
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


def _gradients(
    params: NamedParameters, new: dict[int, torch.Tensor | None], recorder: Recorder, bins: int
) -> dict[str, ParameterGradient]:
    """Each parameter's gradient under its first name; its summary is computed when first read."""
    owners = _owner_types(recorder.modules)
    gradients: dict[str, ParameterGradient] = {}
    for pid, (param, names) in params.items():
        source = GradientSource(
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
    return gradients


# --- helpers ------------------------------------------------------------------------------------


def _named_parameters(
    named_modules: list[tuple[str, nn.Module]],
) -> NamedParameters:
    """Each parameter once, with all its names: ``named_parameters(remove_duplicate=False)``
    grouped, from an existing walk of the modules."""
    found: NamedParameters = {}
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
