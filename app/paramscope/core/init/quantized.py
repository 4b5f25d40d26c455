"""Block-quantized weights: a float8 ``W`` stored with its scales beside it (``W_scale_inv`` in
DeepSeek-V3 and transformers' fp8 checkpoints, ``W_scale`` in compressed-tensors), the model's
weight being ``W`` times the scale of its block.

An init cannot apply to either half: drawing ``W`` anew keeps the old scales (a normal(0, 0.02)
weight became ~1e-4 times that), and the scales, whose names hold "weight", were drawn as weights
(negative scales). Both are refused, saying why; the unquantized release is what to initialize.
"""

from __future__ import annotations

from paramscope.core.model.report import ModelReport

SCALE_SUFFIXES = ("_scale_inv", "_scale")
_UNQUANTIZED = "initialize the unquantized model (e.g. its bfloat16 release)"


def _quantized(report: ModelReport, name: str) -> bool:
    canonical = report.alias_to_name.get(name)
    return canonical is not None and report.tensor(canonical).dtype.startswith("float8")


def quantized_problem(name: str, report: ModelReport) -> str | None:
    """Why an init cannot apply to tensor ``name`` as a block-quantized weight or its scale, or None.

    A float8 ``mlp.down_proj.weight`` beside ``mlp.down_proj.weight_scale_inv`` gives "stored
    quantized, scaled by mlp.down_proj.weight_scale_inv: ..."; the scale gives "a quantization
    scale of mlp.down_proj.weight, not a weight: ...". A float32 weight with a scale: None.
    """
    for suffix in SCALE_SUFFIXES:
        if name.endswith(suffix) and _quantized(report, name[: -len(suffix)]):
            return f"a quantization scale of {name[: -len(suffix)]}, not a weight: {_UNQUANTIZED}"
        if name + suffix in report.alias_to_name and _quantized(report, name):
            return f"stored quantized, scaled by {name + suffix}: new values would keep the old scales; {_UNQUANTIZED}"
    return None
