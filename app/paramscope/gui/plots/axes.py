"""Axes whose labels stay readable: log scales without crowded labels, counts in whole numbers.

pyqtgraph labels every tick of a log axis spanning a decade or two (1, 2, ..., 9 times each
power of ten), and its labels overlap near each decade, where the ticks bunch up. It also
labels counts and positions 0.5 apart. These keep the ticks and grid lines and label only what
fits.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtGui import QFontMetrics

# a log axis labels the powers of ten first, then 5, 2 and 3 times them, then the rest
_MANTISSA_ORDER = (1, 5, 2, 3, 4, 6, 7, 8, 9)
GAP_PX = 6  # free pixels between two labels


def labelled_log_ticks(values: list[float], low: float, high: float, size: float, label_px: float) -> set[float]:
    """Which log10 tick ``values`` of an axis from ``low`` to ``high`` (log10 units) drawn over
    ``size`` pixels get a label ``label_px`` long, so that no two labels overlap.

    Example:
        >>> sorted(round(10 ** v, 3) for v in labelled_log_ticks(
        ...     [math.log10(m / 10) for m in range(1, 11)], -1.0, 0.0, 100.0, 14.0))
        [0.1, 0.2, 0.5, 1.0]
    """
    if not values or high <= low:
        return set(values)
    per_unit = size / (high - low)

    def rank(value: float) -> int:
        mantissa = round(10 ** (value - math.floor(value + 1e-9)))
        return _MANTISSA_ORDER.index(mantissa) if mantissa in _MANTISSA_ORDER else len(_MANTISSA_ORDER)

    kept: list[float] = []
    for value in sorted(values, key=rank):
        if all(abs(value - other) * per_unit >= label_px + GAP_PX for other in kept):
            kept.append(value)
    return set(kept)


class LogAxis(pg.AxisItem):
    """An axis whose labels in log mode never overlap; the ticks and grid stay as pyqtgraph draws them."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self._labelled: set[float] = set()

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: list) -> list:  # noqa: N802, N803
        levels: list[tuple[float | None, list[float]]] = []
        values: list[float] = []
        for spacing, level in super().logTickValues(minVal, maxVal, size, stdTicks):
            fresh = [value for value in level if value not in values]  # (a minor level repeats the decades: drawn bold)
            levels.append((spacing, fresh))
            values += fresh
        self._labelled = labelled_log_ticks(values, minVal, maxVal, size, self._label_px())
        return levels

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        strings = super().logTickStrings(values, scale, spacing)
        return [text if value in self._labelled else "" for value, text in zip(values, strings, strict=True)]

    def _label_px(self) -> float:
        metrics = QFontMetrics(self.style.get("tickFont") or self.font())
        if self.orientation in ("left", "right"):
            return float(metrics.height())
        return float(metrics.horizontalAdvance("5·10⁻¹⁰"))  # the widest label a log axis draws


class IntegerAxis(pg.AxisItem):
    """An axis of whole numbers (an index, a count): ticks only at integers."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:  # noqa: N802, N803
        levels = [
            (spacing, [v for v in values if v == round(v)])
            for spacing, values in super().tickValues(minVal, maxVal, size)
            if spacing >= 1
        ]
        if levels:
            return levels
        low, high = math.ceil(min(minVal, maxVal)), math.floor(max(minVal, maxVal))
        return [(1.0, [float(v) for v in range(low, high + 1)])] if high - low < 100 else []
