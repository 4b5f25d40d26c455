"""Drawing large values in units of a power of ten, so that the user still reads the true values.

Qt's path arithmetic squares data coordinates (a histogram's fill drawn past ~1e150 ran
diagonally over empty bins) and pyqtgraph's ranges overflow past ~9e307 (bars cut off): plots
draw values divided by :func:`unit_for` and their axis multiplies the labels back
(``AxisItem.setScale``). A narrow vertical axis (the heatmap's colour bar) drops labels wider
than itself ("2e+30" left only "0"): it draws short numbers and names the unit in its title.
"""

from __future__ import annotations

import math

LARGEST_DRAWN = 1e100


def unit_for(top: float, largest: float = LARGEST_DRAWN) -> float:
    """1, or the power of ten at or below ``top`` (the largest magnitude drawn) past ``largest``."""
    return 10.0 ** math.floor(math.log10(top)) if math.isfinite(top) and top > largest else 1.0


def unit_text(unit: float) -> str:
    """How a title names the unit: "" for 1, else e.g. " (× 1e+30)"."""
    return "" if unit == 1.0 else f" (× {unit:.0e})"
