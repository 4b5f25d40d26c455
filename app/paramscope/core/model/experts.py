"""A mixture of experts stored as one 3-D tensor per projection.

transformers 5 keeps every expert's matrix of a projection in one parameter of its ``*Experts``
module (``MixtralExperts.gate_up_proj``, ``down_proj``): ``(experts, out, in)``, used as
``F.linear(x, weight[e])``, or ``(experts, in, out)`` where the module says ``is_transposed``
(GPT-OSS, Llama 4: ``x @ weight[e]``). Read as one matrix (``shape[0] x rest``, as a conv
weight is) such a tensor means nothing: its fans, heatmap and spectrum are each expert's.
"""

from __future__ import annotations

import torch
from torch import nn


def experts_layout(module: nn.Module, tensor: torch.Tensor) -> bool | None:
    """``is_transposed`` of the experts ``tensor`` stacks (a parameter of ``module``); None when
    it is not a stack of experts' matrices."""
    transposed = getattr(module, "is_transposed", None)
    if not isinstance(transposed, bool) or tensor.dim() != 3:
        return None
    return transposed


def experts_layout_of(model: nn.Module, name: str, tensor: torch.Tensor) -> bool | None:
    """:func:`experts_layout` of the tensor ``name`` of ``model`` (found by its owner's name)."""
    if tensor.dim() != 3:  # (no module looked up for the others)
        return None
    try:
        owner = model.get_submodule(name.rpartition(".")[0])
    except AttributeError:  # a name kept whole past the module tree's depth
        return None
    return experts_layout(owner, tensor)


def expert_matrices(tensor: torch.Tensor, transposed: bool) -> torch.Tensor:
    """``(experts, out, in)``: each expert's matrix as ``F.linear`` takes it (a view).

    Example:
        >>> expert_matrices(torch.zeros(4, 16, 64), transposed=True).shape
        torch.Size([4, 64, 16])
    """
    return tensor.transpose(1, 2) if transposed else tensor
