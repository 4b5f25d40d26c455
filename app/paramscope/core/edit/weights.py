"""What a tensor stands for in the model, for the views that draw weights (heatmap, spectrum,
the histogram's Dequantized): its values, or for a tensor stored quantized (float8 codes or
MXFP4 blocks with their scale beside them) the codes times their block's scale.

Each function reads what it must through :meth:`Session.values`: a lazily opened checkpoint's
tensors are read (in the caller's worker), never kept.
"""

from __future__ import annotations

import torch

from paramscope.core.edit.session import Session
from paramscope.core.model.dequantize import dequantize, quantized_in, weights_shape


def weights(session: Session, name: str) -> torch.Tensor:
    """``name``'s weights: its values, dequantized where it is stored quantized.

    Raises:
        ValueError: its scale fits no known layout (:func:`~paramscope.core.model.dequantize.layout_problem`).
    """
    quantized = quantized_in(name, session.report)
    if quantized is None:
        return session.values(name)
    with torch.no_grad():  # (of a model's Parameters: no graph kept with the weights)
        return dequantize(session.values(name), session.values(quantized.scale))


def weights_read(session: Session, name: str) -> list[str]:
    """The tensors :func:`weights` reads: ``name``, and its scale where it has one."""
    quantized = quantized_in(name, session.report)
    return [name] if quantized is None else [name, quantized.scale]


def weights_stand_in(session: Session, name: str) -> torch.Tensor:
    """A tensor of the shape and dtype :func:`weights` gives, one element held (zero strides):
    what a view's checks look at, nothing read. The live tensor where it is not quantized."""
    quantized = quantized_in(name, session.report)
    if quantized is None:
        return session.checkable(name)
    shape = weights_shape(tuple(session.report.tensor(name).shape or ()), quantized.stored_as)
    return torch.empty_strided(shape, (0,) * len(shape), dtype=torch.float32)
