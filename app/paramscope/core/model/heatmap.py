"""What the Heatmap tab draws for a tensor: rows × columns, block-reduced when large.

Tensors of more dimensions are shown as ``[shape[0], rest]`` (a conv weight: one row per output
channel), as ``weight.flatten(1)`` would. Large matrices are reduced for display by taking, in
each k×k block, the value of largest magnitude, so a single outlier still shows. Reducing reads
every value: the GUI does it in a worker for large tensors (:func:`heatmap_of` is plain torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from paramscope.core.model.dtypes import holds_numbers, no_numbers_reason
from paramscope.core.model.experts import expert_matrices
from paramscope.core.tasks import TaskState, ensure_state

MAX_DISPLAY = 512  # rows and columns drawn at most; more are block-reduced


@dataclass(frozen=True)
class Heatmap:
    """A tensor as drawn: the reduced array, or ``message`` saying why there is none."""

    name: str
    array: np.ndarray | None = None  # float64, rows × columns after reduction
    factor: int = 1  # k of the k×k blocks
    shape: tuple[int, int] = (0, 0)  # rows × columns before reduction
    flattened: bool = False  # more than 2 dimensions, shown as shape[0] × rest
    nonfinite: int = 0  # NaN/Inf values (drawn as 0)
    message: str = ""
    experts: int = 0  # a stack of this many experts' matrices, drawn one under another
    dequantized: bool = False  # the weights of a tensor stored quantized (codes times scales)

    @property
    def title(self) -> str:
        if self.array is None:
            return ""
        reshaped = " (flattened to rows × rest)" if self.flattened else ""
        if self.experts:
            reshaped = f" ({self.experts} experts, one under another)"
        title = f"{self.name} {list(self.shape)}{reshaped}"
        if self.factor > 1:
            title += f", downsampled {self.factor}× (largest |value| per block)"
        return title + (", dequantized" if self.dequantized else "")  # (the end survives an elided middle)


def as_matrix(tensor: torch.Tensor) -> torch.Tensor | None:
    """The tensor as rows × columns (``flatten(1)`` for 3-D and more), or None for 0-D/1-D."""
    if tensor.dim() < 2:
        return None
    # (the width spelled out: -1 is ambiguous for no elements, and [0, 3] raised from a paint)
    return tensor.detach().reshape(tensor.shape[0], math.prod(tensor.shape[1:]))


def block_maxabs(matrix: torch.Tensor, limit: int = MAX_DISPLAY) -> tuple[np.ndarray, int]:
    """Reduce ``matrix`` to at most ``limit`` rows and columns; returns (float64 array, k).

    Each k×k block becomes its element of largest magnitude (sign kept); non-finite values
    count as 0 here (they are reported beside the plot, not hidden in colour).

    Example:
        >>> block_maxabs(torch.tensor([[1.0, -3.0], [2.0, 0.0]]), limit=1)[0].tolist()
        [[-3.0]]
    """
    rows, cols = matrix.shape
    k = max(1, math.ceil(max(rows, cols) / limit))
    values = torch.nan_to_num(matrix.to(torch.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if k == 1:
        return values.numpy(), 1
    pad_r, pad_c = (-rows) % k, (-cols) % k
    values = torch.nn.functional.pad(values, (0, pad_c, 0, pad_r))
    blocks = values.reshape(values.shape[0] // k, k, values.shape[1] // k, k)
    high = blocks.amax(dim=(1, 3))
    low = blocks.amin(dim=(1, 3))
    return torch.where(low.abs() > high.abs(), low, high).numpy(), k


def _checkable(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix`` in a dtype ``torch.isfinite`` takes (float64 stays: 1e300 is no float32 Inf)."""
    return matrix if matrix.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else matrix.float()


def heatmap_of(
    name: str, tensor: torch.Tensor, state: TaskState | None = None, experts: bool | None = None
) -> Heatmap:
    """The heatmap of ``tensor`` (named ``name``), or why it has none. ``experts``: the tensor
    stacks experts' matrices, ``is_transposed`` as :func:`~paramscope.core.model.experts.experts_layout`
    says (None: it does not); they are drawn one under another, each ``out × in``."""
    state = ensure_state(state)
    if tensor.device.type == "meta":
        return Heatmap(name, message=f"{name}: shape only (no values loaded).")
    if not holds_numbers(tensor.dtype):
        return Heatmap(name, message=f"{name}: {no_numbers_reason(tensor.dtype)}.")
    if tensor.layout != torch.strided:
        layout = str(tensor.layout).removeprefix("torch.")
        return Heatmap(name, message=f"{name}: a {layout} tensor; the heatmap draws dense ones.")
    if tensor.is_complex():
        return Heatmap(name, message=f"{name}: complex values have no heatmap.")
    stacked = None if experts is None else expert_matrices(tensor, experts)
    matrix = as_matrix(tensor) if stacked is None else stacked.reshape(stacked.shape[0] * stacked.shape[1], stacked.shape[2])
    if matrix is None:
        return Heatmap(name, message=f"{name} has shape {list(tensor.shape)}: a heatmap needs 2 or more dimensions.")
    if matrix.numel() == 0:
        return Heatmap(name, message=f"{name} has shape {list(tensor.shape)}: no values to draw.")
    state.check()
    with torch.no_grad():
        array, k = block_maxabs(matrix.cpu())
        state.check()
        nonfinite = int((~torch.isfinite(_checkable(matrix))).sum()) if matrix.is_floating_point() else 0
    rows, cols = matrix.shape
    return Heatmap(name, array, k, (rows, cols), tensor.dim() > 2, nonfinite, experts=0 if stacked is None else len(stacked))
