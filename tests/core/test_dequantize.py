"""The weights of float8 checkpoints: codes times their block's scale, as DeepSeek-V3 computes them."""

from __future__ import annotations

import math

import pytest
import torch

from paramscope.core.files.module_tree import build_module
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.model.dequantize import (
    FLOAT8,
    MXFP4,
    Quantized,
    dequantize,
    dequantize_mxfp4,
    layout_problem,
    quantized_in,
)
from paramscope.core.model.report import build_report

BLOCK = 128  # DeepSeek-V3's weight_block_size


def block_quantize(weight: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """float8 codes and one scale per block, as DeepSeek-V3's checkpoints hold them (the codes
    of a block reach ±448)."""
    rows, cols = weight.shape
    scale = torch.zeros(math.ceil(rows / block), math.ceil(cols / block))
    codes = torch.empty(rows, cols, dtype=torch.float8_e4m3fn)
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            part = weight[i * block : (i + 1) * block, j * block : (j + 1) * block]
            scale[i, j] = part.abs().max() / 448
            codes[i * block : (i + 1) * block, j * block : (j + 1) * block] = (part / scale[i, j]).to(torch.float8_e4m3fn)
    return codes, scale


def test_block_quantized_weights_come_back_within_float8_precision() -> None:
    """300x200 in 128x128 blocks: the last block of each dimension is cut short (44 rows, 72
    columns), where spreading the scale over ceil(n / blocks) codes would misplace it."""
    weight = torch.randn(300, 200, generator=torch.Generator().manual_seed(0)) * 0.02
    codes, scale = block_quantize(weight)
    assert codes.float().abs().max() == 448  # what the Values histogram shows
    weights = dequantize(codes, scale)
    assert weights.dtype == torch.float32 and weights.shape == weight.shape
    by_block = torch.empty_like(weights)
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            rows, cols = slice(i * BLOCK, (i + 1) * BLOCK), slice(j * BLOCK, (j + 1) * BLOCK)
            by_block[rows, cols] = codes[rows, cols].float() * scale[i, j]
    assert torch.equal(weights, by_block)
    assert (weights - weight).abs().max() <= 0.04 * weight.abs().max()  # e4m3: 3 mantissa bits


def test_per_tensor_and_per_channel_scales() -> None:
    codes = torch.tensor([[1.0, -2.0], [3.0, 4.0], [0.5, 8.0]]).to(torch.float8_e4m3fn)
    assert torch.equal(dequantize(codes, torch.tensor(0.5)), codes.float() * 0.5)
    assert torch.equal(dequantize(codes, torch.tensor([[0.5]])), codes.float() * 0.5)
    per_row = torch.tensor([1.0, 10.0, 100.0])
    expected = codes.float() * per_row[:, None]
    assert torch.equal(dequantize(codes, per_row), expected)  # compressed-tensors: [out]
    assert torch.equal(dequantize(codes, per_row[:, None]), expected)  # [out, 1]


@pytest.mark.parametrize(("codes", "scale"), [((300, 200), (301, 2)), ((6, 8), (4, 1)), ((300, 200), (3,)), ((4, 4), (2, 2, 2)), ((4, 6), (0, 1))])
def test_a_scale_that_fits_no_layout_is_said_from_the_shapes(codes: tuple[int, ...], scale: tuple[int, ...]) -> None:
    problem = layout_problem(codes, scale)
    assert problem is not None and str(list(scale)) in problem and str(list(codes)) in problem
    with pytest.raises(ValueError, match="fits no known layout"):
        dequantize(torch.zeros(codes).to(torch.float8_e4m3fn), torch.ones(scale))
    assert layout_problem((300, 200), (3, 2)) is None


def test_which_tensors_have_a_scale() -> None:
    codes, scale = block_quantize(torch.randn(130, 64))
    model, _ = build_module(
        Checkpoint(
            {
                "q.weight": codes,
                "q.weight_scale_inv": scale,  # DeepSeek-V3, transformers' fp8
                "k.weight": codes.clone(),
                "k.weight_scale": torch.tensor(0.1),  # compressed-tensors
                "v.weight": torch.randn(4, 4),
                "v.weight_scale": torch.tensor(0.1),  # float32: stored as it is used
                "o.weight": codes.clone(),  # float8 without a scale
            }
        )
    )
    report = build_report(model)
    assert quantized_in("q.weight", report) == Quantized("q.weight_scale_inv", FLOAT8)
    assert quantized_in("k.weight", report) == Quantized("k.weight_scale", FLOAT8)
    assert quantized_in("v.weight", report) is None
    assert quantized_in("o.weight", report) is None
    assert quantized_in("q.weight_scale_inv", report) is None


def test_opening_a_quantized_checkpoint_says_what_its_statistics_describe(tmp_path) -> None:
    from safetensors.torch import save_file

    from paramscope.core.sources.sources import open_source

    codes, scale = block_quantize(torch.randn(130, 64))
    path = tmp_path / "fp8.safetensors"
    save_file({"q.weight": codes, "q.weight_scale_inv": scale, "k.weight": codes.clone(), "norm.weight": torch.ones(64)}, str(path))
    notes = [n for n in open_source(str(path)).notes if "quantized" in n]
    assert notes == [
        "1 weight(s) stored quantized (float8 codes), each with its scale beside it (_scale_inv): their statistics "
        "are of what is stored; the weights are the codes times the scale of their block (Histogram > Show > Dequantized)"
    ]
    save_file({"q.weight": torch.randn(4, 4), "q.weight_scale": torch.ones(1)}, str(path))  # float32: as used
    assert not [n for n in open_source(str(path)).notes if "quantized" in n]


def mxfp4_pack(weight_exponents: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gpt-oss's layout from 4-bit codes ``[..., G, 32]`` and exponents ``[..., G]``: two codes a
    byte, the even one in the low half; exponents biased by 127."""
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    return blocks, (weight_exponents + 127).to(torch.uint8)


FP4 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def test_mxfp4_blocks_are_their_codes_times_a_power_of_two() -> None:
    """Values chosen on the e2m1 grid times 2**e come back exactly, in the order stored."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (2, 6, 3, 32), generator=generator)
    exponents = torch.randint(-12, 4, (2, 6, 3), generator=generator)
    expected = (FP4[codes] * torch.pow(2.0, exponents.float()).unsqueeze(-1)).flatten(-2)
    blocks, scales = mxfp4_pack(exponents, codes)
    assert torch.equal(dequantize(blocks, scales), expected)  # uint8 codes: MXFP4
    assert torch.equal(dequantize_mxfp4(blocks, scales.view(torch.float8_e8m0fnu)), expected)  # scales as e8m0
    assert layout_problem(tuple(blocks.shape), tuple(scales.shape), MXFP4) is None
    problem = layout_problem(tuple(blocks.shape), (2, 6), MXFP4)
    assert problem is not None and "not one per block" in problem
    with pytest.raises(ValueError, match="not one per block"):
        dequantize_mxfp4(blocks, scales[..., :2])


def test_mxfp4_matches_transformers() -> None:
    """The same numbers as transformers' own ``convert_moe_packed_tensors`` (which transposes
    each expert to [in, out] for its kernels)."""
    mxfp4 = pytest.importorskip("transformers.integrations.mxfp4")
    generator = torch.Generator().manual_seed(1)
    blocks = torch.randint(0, 256, (2, 6, 3, 16), generator=generator, dtype=torch.uint8)
    scales = torch.randint(118, 134, (2, 6, 3), generator=generator, dtype=torch.uint8)
    theirs = mxfp4.convert_moe_packed_tensors(blocks, scales, dtype=torch.float32)
    assert torch.equal(dequantize(blocks, scales).transpose(1, 2), theirs)


def test_gpt_oss_blocks_and_scales_are_found() -> None:
    blocks, scales = mxfp4_pack(torch.zeros(2, 4, 1, dtype=torch.long), torch.zeros(2, 4, 1, 32, dtype=torch.long))
    model, _ = build_module(
        Checkpoint(
            {
                "mlp.experts.gate_up_proj_blocks": blocks,
                "mlp.experts.gate_up_proj_scales": scales,
                "mlp.experts.gate_up_proj_bias": torch.zeros(2, 4),
                "other_blocks": blocks.clone(),  # no scales beside it
            }
        )
    )
    report = build_report(model)
    found = quantized_in("mlp.experts.gate_up_proj_blocks", report)
    assert found == Quantized("mlp.experts.gate_up_proj_scales", MXFP4)
    assert quantized_in("other_blocks", report) is None
    assert quantized_in("mlp.experts.gate_up_proj_scales", report) is None
