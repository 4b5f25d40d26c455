"""Values made ready for JSON, which has no NaN or Inf (torch-free: every command's output uses it)."""

from __future__ import annotations

import math
from typing import Any


def json_ready(value: Any) -> Any:
    """``value`` with every NaN or Inf float as a string ("nan", "inf", "-inf"): JSON has no such
    numbers, and a reader must not take them for missing ones.

    Example:
        >>> json_ready({"max": float("inf"), "sizes": [1, 2.5]})
        {'max': 'inf', 'sizes': [1, 2.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
