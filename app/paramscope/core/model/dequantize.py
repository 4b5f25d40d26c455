"""The weights of a block-quantized checkpoint: the stored codes times the scale of their block.

DeepSeek-V3 and transformers' fp8 checkpoints store a float8 ``W`` (codes up to ±448) with
``W_scale_inv`` beside it, one float32 per 128x128 block; compressed-tensors stores ``W_scale``
per tensor or per output channel. gpt-oss stores MXFP4: ``W_blocks`` holds two 4-bit floats per
byte, 32 per block, and ``W_scales`` one power of two per block (an 8-bit exponent). Statistics
and histograms of what is stored describe codes or bytes, not the model: its weight is each
code times its block's scale, as DeepSeek's ``weight_dequant`` and transformers'
``FP8Linear`` and ``convert_moe_packed_tensors`` compute it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from paramscope.core.model.report import ModelReport

SCALE_SUFFIXES = ("_scale_inv", "_scale")  # the multiplier of float8 codes, in both conventions
FLOAT8, MXFP4 = "float8 codes", "MXFP4 blocks"
# The 16 values of a 4-bit e2m1 float, by its bits (the OCP microscaling spec; transformers' FP4_VALUES)
_FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


@dataclass(frozen=True)
class Quantized:
    """How a tensor is stored quantized: the name of its scale, and the format (:data:`FLOAT8`
    or :data:`MXFP4`)."""

    scale: str
    stored_as: str


def quantized_in(name: str, report: ModelReport) -> Quantized | None:
    """How tensor ``name`` of the report is stored quantized, or None: a float8 tensor with
    ``name_scale_inv`` or ``name_scale`` beside it, or a uint8 ``X_blocks`` with ``X_scales``
    (a float32 weight with a ``weight_scale`` is stored as it is used).

    Example:
        >>> from torch import nn
        >>> from paramscope.core.model.report import build_report
        >>> net = nn.Linear(2, 2).to(torch.float8_e4m3fn)
        >>> net.register_buffer("weight_scale_inv", torch.ones(1, 1))
        >>> quantized_in("weight", build_report(net)), quantized_in("bias", build_report(net))
        (Quantized(scale='weight_scale_inv', stored_as='float8 codes'), None)
    """
    return _quantized(name, lambda n: report.tensor(n).dtype if n in report.alias_to_name else None)


def _quantized(name: str, dtype_of: Callable[[str], str | None]) -> Quantized | None:
    dtype = dtype_of(name)
    if dtype is None:
        return None
    if dtype.startswith("float8"):
        return next((Quantized(name + s, FLOAT8) for s in SCALE_SUFFIXES if dtype_of(name + s) is not None), None)
    if dtype == "uint8" and name.endswith("_blocks"):
        scale = name.removesuffix("_blocks") + "_scales"
        if dtype_of(scale) in ("uint8", "float8_e8m0fnu"):
            return Quantized(scale, MXFP4)
    return None


def scaled_by(scale: str) -> list[str]:
    """The names of the tensors ``scale`` may be the scale of (``W`` for ``W_scale_inv``,
    ``X_blocks`` for ``X_scales``); :func:`quantized_in` of each says whether it is."""
    names = [scale.removesuffix(suffix) for suffix in SCALE_SUFFIXES if scale.endswith(suffix)]
    return names + ([scale.removesuffix("_scales") + "_blocks"] if scale.endswith("_scales") else [])


def weights_shape(codes_shape: tuple[int, ...], stored_as: str) -> tuple[int, ...]:
    """The shape of the weights codes of ``codes_shape`` stand for: the same for float8, and
    ``[..., G * 32]`` for MXFP4 blocks ``[..., G, 16]`` (:func:`dequantize_mxfp4`)."""
    if stored_as == MXFP4 and len(codes_shape) >= 2:
        return (*codes_shape[:-2], codes_shape[-2] * codes_shape[-1] * 2)
    return tuple(codes_shape)


def quantized_note(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """A note for a checkpoint holding quantized weights with their scales beside them: what its
    statistics describe and where the weights are seen; None when it holds none."""
    def dtype_of(name: str) -> str | None:
        tensor = tensors.get(name)
        return None if tensor is None else str(tensor.dtype).removeprefix("torch.")

    found = [(name, how) for name in tensors if (how := _quantized(name, dtype_of)) is not None]
    if not found:
        return None
    name, how = found[0]
    kinds = " and ".join(sorted({h.stored_as for _, h in found}))
    return (
        f"{len(found):,} weight(s) stored quantized ({kinds}), each with its scale beside it "
        f"({how.scale.removeprefix(name.removesuffix('_blocks'))}): their statistics are of what is "
        "stored; the weights are the codes times the scale of their block (Histogram > Show > Dequantized)"
    )


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The weights ``codes`` stand for, in float32: what a quantized layer computes with.

    uint8 ``codes`` are MXFP4 blocks (:func:`dequantize_mxfp4`); other codes (float8) are
    multiplied by ``scale``, which is one number (per tensor), one per output channel (``[out]``
    or ``[out, 1]``), or one per block: a tensor of ``codes``' rank whose every size ``s``
    covers ``n`` codes in blocks, the last one of a dimension cut short. A block's size is not
    stored: it is the smallest power of two giving ``s`` blocks (128 in DeepSeek-V3, Qwen3 and
    transformers' fp8 checkpoints: for 200 codes in 2 blocks, 128 and 72, where
    ``ceil(200 / 2)`` would say 100), else ``ceil(n / s)``.

    Raises:
        ValueError: the scale's shape fits none of these layouts.

    Example:
        >>> codes = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).to(torch.float8_e4m3fn)
        >>> dequantize(codes, torch.tensor([[10.0, 100.0]]))  # blocks of 2x2: columns 0-1, then 2
        tensor([[ 10.,  20., 300.],
                [ 40.,  50., 600.]])
    """
    if codes.dtype == torch.uint8:
        return dequantize_mxfp4(codes, scale)
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


def dequantize_mxfp4(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """MXFP4 ``blocks`` ``[..., G, 16]`` (two 4-bit e2m1 floats a byte, the low half first) times
    ``2 ** (scales - 127)``, ``scales`` ``[..., G]`` (one 8-bit exponent per block of 32), as
    ``[..., G * 32]``: each row as stored (gpt-oss's experts ``[experts, out, in]``; transformers
    transposes them to ``[experts, in, out]`` for its kernels).

    Raises:
        ValueError: ``scales`` is not one per block of ``blocks``.

    Example:
        >>> blocks = torch.tensor([[[0x21] + [0] * 15]], dtype=torch.uint8)  # 0.5 then 1.0
        >>> dequantize_mxfp4(blocks, torch.tensor([[128]], dtype=torch.uint8))[0, :3]  # x 2
        tensor([1., 2., 0.])
    """
    if blocks.dim() < 2 or tuple(scales.shape) != tuple(blocks.shape[:-1]):
        raise ValueError(_misfit(blocks.shape, scales.shape, MXFP4))
    exponents = (scales.view(torch.uint8) if scales.dtype != torch.uint8 else scales).to(torch.int32) - 127
    table = torch.tensor(_FP4_VALUES, dtype=torch.float32)
    values = torch.stack((table[(blocks & 0x0F).long()], table[(blocks >> 4).long()]), dim=-1)
    values = torch.ldexp(values.flatten(-2), exponents.unsqueeze(-1))  # [..., G, 32]
    return values.flatten(-2)


def layout_problem(codes_shape: tuple[int, ...], scale_shape: tuple[int, ...], stored_as: str = FLOAT8) -> str | None:
    """Why a scale of ``scale_shape`` cannot multiply codes of ``codes_shape`` (see
    :func:`dequantize`), or None: known from the shapes, before any value is read."""
    if stored_as == MXFP4:
        fits = len(codes_shape) >= 2 and tuple(scale_shape) == tuple(codes_shape[:-1])
    else:
        fits = _block_sizes(codes_shape, scale_shape) is not None
    return None if fits else _misfit(codes_shape, scale_shape, stored_as)


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


def _misfit(codes: tuple[int, ...], scale: tuple[int, ...], stored_as: str = FLOAT8) -> str:
    if stored_as == MXFP4:
        return f"MXFP4 scales of shape {list(scale)} are not one per block of blocks of shape {list(codes)}"
    return (
        f"a scale of shape {list(scale)} fits no known layout for codes of shape "
        f"{list(codes)} (one per tensor, per output channel, or per block)"
    )
