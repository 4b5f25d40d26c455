"""Block-quantized weights: float8 codes stored with their scales beside them (``W_scale_inv`` in
DeepSeek-V3 and transformers' fp8 checkpoints, ``W_scale`` in compressed-tensors), or gpt-oss's
MXFP4 ``X_blocks`` with ``X_scales``; the model's weight is each code times its block's scale
(:mod:`paramscope.core.model.dequantize`).

An init cannot apply to either half: drawing ``W`` anew keeps the old scales (a normal(0, 0.02)
weight became ~1e-4 times that), and the scales, whose names hold "weight", were drawn as weights
(negative scales). Both are refused, saying why; the unquantized release is what to initialize.
"""

from __future__ import annotations

from paramscope.core.model.dequantize import quantized_in, scaled_by
from paramscope.core.model.report import ModelReport

_UNQUANTIZED = "initialize the unquantized model (e.g. its bfloat16 release)"


def quantized_problem(name: str, report: ModelReport) -> str | None:
    """Why an init cannot apply to tensor ``name`` as a block-quantized weight or its scale, or None.

    A float8 ``mlp.down_proj.weight`` beside ``mlp.down_proj.weight_scale_inv`` gives "stored
    quantized, scaled by mlp.down_proj.weight_scale_inv: ..."; the scale gives "a quantization
    scale of mlp.down_proj.weight, not a weight: ..."; gpt-oss's ``down_proj_blocks`` and
    ``down_proj_scales`` the same. A float32 weight with a scale: None.
    """
    quantized = quantized_in(name, report)
    if quantized is not None:
        return f"stored quantized, scaled by {quantized.scale}: new values would keep the old scales; {_UNQUANTIZED}"
    for weight in scaled_by(name):
        found = quantized_in(weight, report)
        if found is not None and found.scale == name:
            return f"a quantization scale of {weight}, not a weight: {_UNQUANTIZED}"
    return None
