"""What torch can compute with a dtype, asked once per dtype."""

from __future__ import annotations

import functools
import warnings

import torch

# quantized dtypes hold numbers (an integer times a scale) that are read by dequantizing
_QUANTIZED = {getattr(torch, n) for n in ("qint8", "quint8", "qint32", "quint4x2", "quint2x4") if hasattr(torch, n)}


@functools.cache
def holds_numbers(dtype: torch.dtype) -> bool:
    """Whether float32 values convert into ``dtype`` and back: not so for packed pairs
    (``float4_e2m1fn_x2``) or raw bits (``bits8``, ``bits16``), whose statistics, diffs, inits and
    edits torch cannot compute ("copy_ not implemented for 'Float4_e2m1fn_x2'").

    Example:
        >>> holds_numbers(torch.bfloat16), holds_numbers(torch.bits8)
        (True, False)
    """
    if dtype in _QUANTIZED:
        return True
    try:
        with warnings.catch_warnings():  # (complex32 is "experimental", complex to real drops .imag)
            warnings.simplefilter("ignore")
            torch.zeros(1).to(dtype).to(torch.float32)
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    return True


def computed_in(dtype: torch.dtype) -> torch.dtype | None:
    """Where to compute for a dtype torch has no add, mul, clamp or random numbers for (on the
    CPU), writing the result back: float8 in float32 (rounded back), unsigned 16 to 64 bits in
    int64 (modulo 2**bits back, as unsigned arithmetic does); None for the others."""
    if dtype.is_floating_point and dtype.itemsize == 1:
        return torch.float32
    if dtype in (torch.uint16, torch.uint32, torch.uint64):
        return torch.int64
    return None


def no_numbers_reason(dtype: torch.dtype) -> str:
    """The one-line reason for a dtype :func:`holds_numbers` refuses."""
    return f"{str(dtype).removeprefix('torch.')} holds packed or raw bits torch cannot compute with"
