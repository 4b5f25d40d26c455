"""The weights of a block-quantized checkpoint: float8 codes times the scale of their block.

DeepSeek-V3 and transformers' fp8 checkpoints store a float8 ``W`` (codes up to ±448) with
``W_scale_inv`` beside it, one float32 per 128x128 block; compressed-tensors stores ``W_scale``
per tensor or per output channel. Statistics and histograms of ``W`` alone describe the codes,
not the model: its weight is ``W * scale`` with the scale spread over its block, as DeepSeek's
``weight_dequant`` and transformers' ``FP8Linear`` compute it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from paramscope.core.model.report import ModelReport

SCALE_SUFFIXES = ("_scale_inv", "_scale")  # the multiplier of W's codes, in both conventions


def scale_of(name: str, report: ModelReport) -> str | None:
    """The name of the scale multiplying float8 tensor ``name`` (``name`` + ``_scale_inv`` or
    ``_scale``), or None: not float8, or no scale beside it (a float32 weight with a
    ``weight_scale`` is stored as it is used).

    Example:
        >>> from torch import nn
        >>> from paramscope.core.model.report import build_report
        >>> net = nn.Linear(2, 2).to(torch.float8_e4m3fn)
        >>> net.register_buffer("weight_scale_inv", torch.ones(1, 1))
        >>> scale_of("weight", build_report(net)), scale_of("bias", build_report(net))
        ('weight_scale_inv', None)
    """
    canonical = report.alias_to_name.get(name)
    if canonical is None or not report.tensor(canonical).dtype.startswith("float8"):
        return None
    return next((name + s for s in SCALE_SUFFIXES if name + s in report.alias_to_name), None)


def quantized_note(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """A note for a checkpoint holding float8 weights with their scales beside them: what its
    statistics describe and where the weights are seen; None when it holds none."""
    found = [
        name for name, tensor in tensors.items()
        if tensor.dtype.is_floating_point and tensor.element_size() == 1
        and any(name + suffix in tensors for suffix in SCALE_SUFFIXES)
    ]  # fmt: skip
    if not found:
        return None
    suffix = next(s for s in SCALE_SUFFIXES if found[0] + s in tensors)
    return (
        f"{len(found):,} float8 weight(s) stored quantized, each with its scale beside it "
        f"({suffix}): their statistics are of the codes; the weights are the codes times the "
        "scale of their block (Histogram > Show > Dequantized)"
    )


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``codes`` times their scale, in float32: the weights a quantized layer computes with.

    ``scale`` is one number (per tensor), one per output channel (``[out]`` or ``[out, 1]``), or
    one per block: a tensor of ``codes``' rank whose every size ``s`` covers ``n`` codes in
    blocks, the last one of a dimension cut short. A block's size is not stored: it is the
    smallest power of two giving ``s`` blocks (128 in DeepSeek-V3, Qwen3 and transformers' fp8
    checkpoints: for 200 codes in 2 blocks, 128 and 72, where ``ceil(200 / 2)`` would say 100),
    else ``ceil(n / s)``.

    Raises:
        ValueError: the scale's shape fits none of these layouts.

    Example:
        >>> codes = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).to(torch.float8_e4m3fn)
        >>> dequantize(codes, torch.tensor([[10.0, 100.0]]))  # blocks of 2x2: columns 0-1, then 2
        tensor([[ 10.,  20., 300.],
                [ 40.,  50., 600.]])
    """
    sizes = _block_sizes(tuple(codes.shape), tuple(scale.shape))
    if sizes is None:
        raise ValueError(_misfit(codes.shape, scale.shape))
    values, factor = codes.to(torch.float32), scale.to(torch.float32)
    if factor.numel() == 1:
        return values * factor.reshape(())
    if factor.dim() != values.dim():  # one per output channel, as [out]
        factor = factor.reshape(-1, *([1] * (values.dim() - 1)))
    for dim, size in enumerate(sizes):
        if size is not None:
            factor = factor.repeat_interleave(size, dim=dim).narrow(dim, 0, values.shape[dim])
    return values * factor


def layout_problem(codes_shape: tuple[int, ...], scale_shape: tuple[int, ...]) -> str | None:
    """Why a scale of ``scale_shape`` cannot multiply codes of ``codes_shape`` (see
    :func:`dequantize`), or None: known from the shapes, before any value is read."""
    return _misfit(codes_shape, scale_shape) if _block_sizes(codes_shape, scale_shape) is None else None


def _block_sizes(codes: tuple[int, ...], scale: tuple[int, ...]) -> list[int | None] | None:
    """Per dimension of ``codes``, the block size to spread the scale over (None: as it is, or
    broadcast); None when the scale fits no layout."""
    if math.prod(scale) == 1:
        return [None] * len(codes)
    if len(scale) == 1 and len(codes) >= 1 and scale[0] == codes[0]:
        scale = (scale[0],) + (1,) * (len(codes) - 1)  # one per output channel
    if len(scale) != len(codes):
        return None
    sizes: list[int | None] = []
    for count, blocks in zip(codes, scale, strict=True):
        if blocks == count or blocks == 1:  # one scale per code, or one for the whole dimension
            sizes.append(None)
            continue
        size = _block_size(count, blocks)
        if size is None:
            return None
        sizes.append(size)
    return sizes


def _block_size(count: int, blocks: int) -> int | None:
    """The size of ``blocks`` blocks covering ``count`` codes (see :func:`dequantize`), or None."""
    if blocks <= 0 or blocks > count:
        return None
    size = 1
    while -(-count // size) > blocks:
        size *= 2
    if -(-count // size) == blocks:
        return size
    size = -(-count // blocks)
    return size if -(-count // size) == blocks else None


def _misfit(codes: tuple[int, ...], scale: tuple[int, ...]) -> str:
    return (
        f"a scale of shape {list(scale)} fits no known layout for codes of shape "
        f"{list(codes)} (one per tensor, per output channel, or per block)"
    )
