"""How the window writes a number in a table cell or a tooltip."""

from __future__ import annotations

import math


def number_text(value: float | None, digits: int = 4) -> str:
    """``digits`` significant digits; "—" for no number; NaN and Inf as Python writes them.

    Example:
        >>> number_text(0.123456), number_text(None), number_text(float("inf")), number_text(2 / 3, 6)
        ('0.1235', '—', 'inf', '0.666667')
    """
    if value is None:
        return "—"
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:.{digits}g}"
