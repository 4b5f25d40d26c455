"""Drawing large or tiny values in units of a power of ten, so that the user still reads the true values.

Qt's path arithmetic squares data coordinates (a histogram's fill drawn past ~1e150 ran
diagonally over empty bins), pyqtgraph's ranges overflow past ~9e307 (bars cut off, an axis
that raises in every paint), and its tick spacing of a range of subnormals (~1e-323) rounds to
0 (a ZeroDivisionError in every paint). A narrow axis (the heatmap's colour bar) drops labels
wider than itself ("2e+30" left only "0"). So plots draw values divided by :func:`unit_for` and
name the unit in the axis title (``AxisItem.setScale`` would scale the labels back, but its own
range overflows in the same way).
"""

from __future__ import annotations

import math

LARGEST_DRAWN = 1e100
SMALLEST_DRAWN = 1e-100
# Where a narrow axis (the heatmap's colour bar, the spectrum's half-width histogram) switches to
# a unit: from this magnitude on its labels ("2e+30") were dropped or ran into each other.
SHORT_LABELS = 1e4


def unit_for(top: float, largest: float = LARGEST_DRAWN) -> float:
    """1, or the power of ten at or below ``top`` (the largest magnitude drawn) when ``top`` is
    past ``largest`` or below :data:`SMALLEST_DRAWN` (but not 0)."""
    if not math.isfinite(top) or top == 0.0 or SMALLEST_DRAWN <= top <= largest:
        return 1.0
    return 10.0 ** max(math.floor(math.log10(top)), -323)  # (10.0**-324 is 0)


def unit_text(unit: float) -> str:
    """How a title names the unit: "" for 1, else e.g. " (× 1e+30)"."""
    return "" if unit == 1.0 else f" (× {unit:.0e})"
