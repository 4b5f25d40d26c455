"""Layer-sequential unit-variance (LSUV) initialization: a data-dependent init.

Source: D. Mishkin and J. Matas, "All you need is a good init", ICLR 2016 (arXiv:1511.06422),
Algorithm 1; reference code https://github.com/ducha-aiki/LSUVinit (Caffe) and
https://github.com/ducha-aiki/LSUV-pytorch.

1. Pre-initialize every chosen weight with an orthonormal matrix (Saxe et al. 2014,
   ``torch.nn.init.orthogonal_``; a conv weight is flattened to ``out x rest`` by torch).
2. For each layer in the order the forward calls it: run the sample batch, take the standard
   deviation of the layer's output; while ``|std - 1| > tol`` and fewer than ``max_iter``
   rescales were made, divide the layer's weights by that std.

The paper compares the output *variance* with 1; this module compares the std (what
paramscope's signal plot shows), so ``tol=0.05`` keeps the std in [0.95, 1.05] on the sample.
Biases are left as they are (the paper's step 2 rescales weights only); with a large bias the
loop needs more passes, and a layer that does not reach the tolerance in ``max_iter`` passes is
named in a note. A layer whose output cannot be measured (never called as a module, e.g.
``MultiheadAttention.out_proj``, whose weight the attention uses directly; no floating-point
output; an output std of 0) is skipped with a note and keeps its weights.

Seeds: the orthogonal draws, the sample input and the forward's RNG (dropout) all come from the
request's generator, so the same seed gives the same tensors. The model's buffers (BatchNorm
running statistics, which a forward in train mode updates) are put back afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import init as torch_init

from paramscope.core.backward.input_specs import InputSpec, parse_input_spec
from paramscope.core.backward.inputs import make_call_inputs
from paramscope.core.backward.losses import differentiable_leaves
from paramscope.core.errors import ParamscopeError
from paramscope.core.tasks import TaskState, ensure_state

DEFAULT_TOL = 0.05
DEFAULT_MAX_ITER = 10
MISSING_INPUT = (
    "lsuv needs a sample input (its scale is measured on data): give --input SPEC, "
    "or input='randn(256,64)' in the rule"
)


class LSUVError(ParamscopeError):
    """LSUV cannot run: no input, no forward, or the forward failed."""


class _Stop(Exception):
    """Raised by a hook to end a forward once the layer being rescaled has run."""


@dataclass
class LayerResult:
    """One layer: its weights, the output std after the orthogonal start and at the end."""

    module: str
    weights: tuple[str, ...]
    std_start: float | None = None
    std_end: float | None = None
    rescales: int = 0
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "module": self.module,
            "weights": list(self.weights),
            "std_start": self.std_start,
            "std_end": self.std_end,
            "rescales": self.rescales,
            "note": self.note,
        }


@dataclass
class LSUVResult:
    layers: list[LayerResult] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        return [f"lsuv: {layer.module or '(root)'}: {layer.note}" for layer in self.layers if layer.note]


def _float_output(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() else None
    leaves = differentiable_leaves(output)
    return leaves[0][1] if leaves else None


def _std(tensor: torch.Tensor) -> float:
    return float(tensor.detach().double().std()) if tensor.numel() > 1 else 0.0


class _Buffers:
    """Buffer values (BatchNorm running statistics) put back after the forwards."""

    def __init__(self, model: nn.Module) -> None:
        self.saved = [(b, b.detach().clone()) for b in model.buffers() if b.device.type != "meta"]

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, copy in self.saved:
                if buffer.shape == copy.shape:
                    buffer.copy_(copy)


class _Runner:
    """Runs the sample forward with hooks on the layers; can stop after a given layer."""

    def __init__(self, model: nn.Module, args: tuple, kwargs: dict, seed: int,
                 layers: Mapping[str, nn.Module]) -> None:  # fmt: skip
        self.model, self.args, self.kwargs, self.seed = model, args, kwargs, seed
        self.layers = dict(layers)
        self.order: list[str] = []  # first-call order of the layers
        self.outputs: dict[str, torch.Tensor | None] = {}
        self.stop_after: str | None = None

    def _hook(self, name: str):  # noqa: ANN202 - a forward hook
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if name in self.outputs:
                return  # a module called twice is measured on its first call
            self.order.append(name)
            self.outputs[name] = _float_output(output)
            if name == self.stop_after:
                raise _Stop()

        return hook

    def run(self, stop_after: str | None = None) -> None:
        """One forward; ``outputs`` then holds each layer's first output (until ``stop_after``)."""
        self.stop_after, self.order, self.outputs = stop_after, [], {}
        handles = [m.register_forward_hook(self._hook(n)) for n, m in self.layers.items()]
        # enable_grad: with grad off an eval-mode TransformerEncoderLayer takes its fused fast
        # path, which calls no Linear module, so their hooks would never fire.
        try:
            with torch.random.fork_rng(devices=[]), torch.enable_grad():
                torch.manual_seed(self.seed)
                self.model(*self.args, **self.kwargs)
        except _Stop:
            pass
        except Exception as exc:
            raise LSUVError(f"lsuv: the forward failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        finally:
            for handle in handles:
                handle.remove()

    def std(self, name: str) -> float | None:
        output = self.outputs.get(name)
        return None if output is None else _std(output)


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    try:
        return model.get_parameter(name)
    except AttributeError:
        return model.get_buffer(name)


def _layers(model: nn.Module, names: Sequence[str]) -> dict[str, tuple[nn.Module, list[str]]]:
    """Owning module name -> (module, weights), a module shared under two names listed once."""
    by_id: dict[int, str] = {}
    layers: dict[str, tuple[nn.Module, list[str]]] = {}
    for name in names:
        owner = name.rpartition(".")[0]
        module = model.get_submodule(owner)
        key = by_id.setdefault(id(module), owner)
        layers.setdefault(key, (module, []))[1].append(name)
    return layers


def _inputs(model: nn.Module, spec: InputSpec | str, seed: int) -> tuple[tuple, dict]:
    if isinstance(spec, str):
        if not spec.strip():
            raise LSUVError(MISSING_INPUT)
        spec = parse_input_spec(spec)
    args, kwargs, _ = make_call_inputs(model, spec, seed)
    return args, kwargs


def lsuv_(model: nn.Module, names: Sequence[str], input: InputSpec | str, *,  # noqa: A002
          tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER,
          generator: torch.Generator | None = None, state: TaskState | None = None) -> LSUVResult:  # fmt: skip
    """LSUV-initialize the weights ``names`` of ``model`` in place (see the module docstring).

    Args:
        names: qualified names of the weights (at least 2-D); their owning modules are the layers.
        input: the sample batch, an input spec such as ``"randn(256,64)"``.
        tol: stop rescaling a layer once its output std is within ``1 ± tol``.
        max_iter: at most this many rescales per layer.
        generator: draws the orthogonal start, the sample input and the forward's RNG seed.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        >>> result = lsuv_(net, ["0.weight", "2.weight"], "randn(64,8)", generator=torch.Generator().manual_seed(0))
        >>> all(abs(layer.std_end - 1) <= 0.05 for layer in result.layers)
        True
    """
    from paramscope.core.init.initializer_base import derived_seed

    if tol <= 0 or not math.isfinite(tol):
        raise LSUVError(f"lsuv: tol must be a positive number, got {tol!r}")
    if max_iter < 0:
        raise LSUVError(f"lsuv: max_iter must be 0 or more, got {max_iter!r}")
    state = ensure_state(state)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    input_seed, forward_seed = derived_seed(generator), derived_seed(generator)
    args, kwargs = _inputs(model, input, input_seed)
    layers = _layers(model, names)
    runner = _Runner(model, args, kwargs, forward_seed, {n: m for n, (m, _) in layers.items()})
    buffers = _Buffers(model)
    result = LSUVResult()
    try:
        runner.run()  # which layers run, in which order, with which outputs
        results = {n: LayerResult(n, tuple(ws)) for n, (_, ws) in layers.items()}
        for name, layer in results.items():
            layer.note = _skip_reason(model, name, layer.weights, runner)
        ordered = [results[n] for n in runner.order if results[n].note is None]
        chosen = {w for layer in ordered for w in layer.weights}
        with torch.no_grad():
            for name in names:  # the orthogonal start, in the request's order
                if name in chosen:
                    _orthogonal_(_tensor(model, name), generator)
        for number, layer in enumerate(ordered):
            state.progress(number / max(len(ordered), 1), layer.module)
            _rescale(model, layer, runner, tol, max_iter)
        result.layers = ordered + [r for r in results.values() if r.note is not None and r not in ordered]
    finally:
        buffers.restore()
    return result


def _orthogonal_(tensor: torch.Tensor, generator: torch.Generator | None) -> None:
    """The orthogonal start, drawn in float32 where torch's QR has no kernel for the dtype
    (bfloat16 and float16 on the CPU: "geqrf_cpu" not implemented), as the orthogonal_
    initializer draws it (:func:`~paramscope.core.init.initializers.drawn_in_float32`)."""
    from paramscope.core.init.initializers import drawn_in_float32

    if not drawn_in_float32("orthogonal_", tensor.dtype):
        torch_init.orthogonal_(tensor, generator=generator)
        return
    drawn = torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device)
    torch_init.orthogonal_(drawn, generator=generator)
    tensor.copy_(drawn)


def _skip_reason(model: nn.Module, name: str, weights: Sequence[str], runner: _Runner) -> str | None:
    for weight in weights:
        tensor = _tensor(model, weight)
        if tensor.dim() < 2 or not tensor.is_floating_point():
            return f"{weight} is not a floating-point matrix: left as it was"
    if name not in runner.outputs:
        return "not called as a module in the forward (its weight is used directly): left as it was"
    if runner.outputs[name] is None:
        return "its output has no floating-point tensor to measure: left as it was"
    return None


def _rescale(model: nn.Module, layer: LayerResult, runner: _Runner, tol: float, max_iter: int) -> None:
    tensors = [_tensor(model, w) for w in layer.weights]
    for attempt in range(max_iter + 1):
        runner.run(stop_after=layer.module)
        std = runner.std(layer.module)
        if attempt == 0:
            layer.std_start = std
        layer.std_end = std
        if std is None or not math.isfinite(std) or std == 0.0:
            layer.note = f"output std is {std}: cannot rescale, left orthogonal"
            return
        if abs(std - 1.0) <= tol:
            return
        if attempt == max_iter:
            layer.note = f"output std {std:.3g} after {max_iter} rescale(s), not within 1±{tol:g}"
            return
        with torch.no_grad():
            for tensor in tensors:
                tensor.div_(std)
        layer.rescales += 1
