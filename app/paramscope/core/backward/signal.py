"""Signal propagation: how the scale of activations and gradients changes through depth.

For each leaf layer call, in forward order, :class:`SignalRecorder` keeps the standard deviation
of its output in the forward pass and of the gradient with respect to that output in the
backward pass. An initializer that keeps both roughly constant through depth (Kaiming for ReLU
networks) trains; one that shrinks them layer after layer (``normal_(std=0.01)`` on a deep MLP)
makes the signal vanish. Only forward hooks on modules and tensor hooks on their (transient)
outputs are used; the caller removes the module hooks afterwards.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from paramscope.core.backward.losses import differentiable_leaves
from paramscope.core.model import kernels
from paramscope.core.model.tensor_stats import tensor_stats

# The fast std is used when the centered sum of squares keeps this share of the raw one.
FAST_STD_MARGIN = 0.1
_FAST_DTYPES = (torch.float32, torch.float64)
COMPILED_SUMS_MIN = 1 << 16  # elements


@dataclass(frozen=True)
class SignalPoint:
    """One leaf layer call: std of its output (forward) and of the gradient at its output."""

    index: int  # depth: order of the call in the forward pass
    module: str  # qualified name of the module call ("(root)" for the root)
    type_name: str
    activation_std: float | None
    gradient_std: float | None  # None when no gradient reached this output
    has_parameters: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "module": self.module,
            "type": self.type_name,
            "activation_std": self.activation_std,
            "gradient_std": self.gradient_std,
            "has_parameters": self.has_parameters,
        }


@dataclass
class _Record:
    module: str
    type_name: str
    activation_std: float | None
    has_parameters: bool
    gradient_std: float | None = None


def _std(tensor: torch.Tensor) -> float | None:
    """Sample std of the finite values, as :func:`tensor_stats` gives it.

    It runs on every layer output and gradient inside the timed pass, so float tensors get
    their sum and sum of squares in one or two fast reads of their distinct elements (a
    broadcast gradient, such as a sum loss's ones, is read once); where those are not precise
    (non-finite values, a mean large against the std) the exact float64 statistics decide.
    """
    tensor = tensor.detach()
    n = tensor.numel()
    if n > 1 and tensor.dtype in _FAST_DTYPES and tensor.layout == torch.strided:
        distinct = (tensor if tensor.is_contiguous() else _distinct(tensor)).reshape(-1)
        copies = n / distinct.numel()  # each distinct element stands for this many
        total, squares = _sums(distinct)
        total, squares = total * copies, squares * copies
        centered = squares - total * total / n
        if not math.isfinite(squares):
            pass  # NaN/Inf: only the exact statistics skip them
        elif distinct.numel() == 1:
            return 0.0
        elif centered > FAST_STD_MARGIN * squares:  # |mean| < 3 std: little lost to rounding
            return math.sqrt(centered / (n - 1))
    return tensor_stats(tensor).std


def _sums(flat: torch.Tensor) -> tuple[float, float]:
    """Sum and sum of squares of a 1-D tensor: one read in the compiled float64 loops of the
    statistics when they are loaded (a layer's output has left the cache: each read counts),
    else two torch reductions."""
    big = flat.numel() >= COMPILED_SUMS_MIN  # below, two cache-resident torch calls cost less
    if big and flat.dtype == torch.float32 and flat.device.type == "cpu" and kernels.loaded():
        # contiguous: a strided view would make numba compile another loop, mid-backward
        total, squares, _ = kernels.moments(flat.contiguous().numpy(), 0.0)
        return total, squares
    return float(flat.sum()), float(torch.dot(flat, flat))


def _distinct(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without its broadcast dimensions (stride 0): every element once."""
    return tensor[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in tensor.stride())]


class SignalRecorder:
    """Collects :class:`SignalPoint` data; call :meth:`on_output` from a module's forward hook."""

    def __init__(self) -> None:
        self._records: list[_Record] = []

    @staticmethod
    def is_leaf(module: nn.Module) -> bool:
        return not any(True for _ in module.children())

    def on_output(self, name: str, module: nn.Module, output: object) -> None:
        """Record the std of ``output``'s first floating tensor and hook its gradient."""
        if isinstance(output, torch.Tensor):  # most layers: no walk over a structure
            if not (output.is_floating_point() or output.is_complex()):
                return
            tensor = output
        else:
            leaves = differentiable_leaves(output)
            if not leaves:
                return
            tensor = leaves[0][1]
        has_parameters = any(p is not None for p in module._parameters.values())
        record = _Record(name, type(module).__name__, _std(tensor), has_parameters)
        self._records.append(record)
        if tensor.requires_grad:

            def keep_gradient_std(grad: torch.Tensor, record: _Record = record) -> None:
                record.gradient_std = _std(grad)

            # e.g. an output that cannot take hooks: keep the forward std only
            with contextlib.suppress(RuntimeError):
                tensor.register_hook(keep_gradient_std)

    def points(self) -> list[SignalPoint]:
        return [
            SignalPoint(
                i, r.module, r.type_name, r.activation_std, r.gradient_std, r.has_parameters
            )
            for i, r in enumerate(self._records)
        ]
