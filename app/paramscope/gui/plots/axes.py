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


def labelled_log_ticks(
    values: list[float], low: float, high: float, size: float, label_px: float, ranked: bool = True
) -> set[float]:
    """Which log10 tick ``values`` of an axis from ``low`` to ``high`` (log10 units) drawn over
    ``size`` pixels get a label ``label_px`` long, so that no two labels overlap. Powers of ten
    come first, then 5, 2, 3... times them; unless ``ranked`` is False: in the order given.

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
    for value in sorted(values, key=rank) if ranked else values:
        if all(abs(value - other) * per_unit >= label_px + GAP_PX for other in kept):
            kept.append(value)
    return set(kept)


def _without_repeats(levels: list) -> list[tuple[float | None, list[float]]]:
    """Tick ``levels`` with each value only in the first level that has it."""
    seen: set[float] = set()
    out: list[tuple[float | None, list[float]]] = []
    for spacing, level in levels:
        out.append((spacing, [value for value in level if value not in seen]))
        seen.update(level)
    return out


class LogAxis(pg.AxisItem):
    """An axis whose labels in log mode never overlap; the ticks and grid stay as pyqtgraph draws them."""

    def __init__(self, orientation: str) -> None:
        super().__init__(orientation)
        self._labelled: set[float] = set()
        self._within_decade = False  # fewer than two powers-of-ten ticks in view: linear steps
        self._places = 0  # decimals of the linear steps' labels

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: list) -> list:  # noqa: N802, N803
        levels = super().logTickValues(minVal, maxVal, size, stdTicks)
        ticks = {value for _spacing, level in levels for value in level if minVal <= value <= maxVal}
        self._within_decade = len(ticks) < 2 and -300.0 < minVal <= maxVal < 300.0  # (10**x stays a float)
        if self._within_decade:  # (7.2 to 8.4: the one tick 8) linear steps, as a linear axis has them
            levels = self._linear_levels(minVal, maxVal, size)
        levels = _without_repeats(levels)  # (a minor level repeats the decades: drawn bold)
        values = [value for _spacing, level in levels for value in level]
        if self._within_decade and levels:  # labelled as a linear axis: its major steps if two show
            (step, major), step_all = levels[0], levels[-1][0]
            values = major if len(major) >= 2 else values
            self._places = max(0, -math.floor(math.log10(step if len(major) >= 2 else step_all)))
        ranked = not self._within_decade  # (linear steps: in order, the major ones first)
        self._labelled = labelled_log_ticks(values, minVal, maxVal, size, self._label_px(), ranked)
        return levels

    def _linear_levels(self, low: float, high: float, size: float) -> list[tuple[float, list[float]]]:
        """Ticks at the steps a linear axis from ``10**low`` to ``10**high`` takes, in log10 units."""
        start, stop = 10.0**low, 10.0**high
        levels: list[tuple[float, list[float]]] = []
        for spacing, offset in self.tickSpacing(start, stop, size)[:2]:
            first = math.ceil((start - offset) / spacing) * spacing + offset
            steps = [first + k * spacing for k in range(int((stop - first) / spacing) + 1)]
            levels.append((spacing, [math.log10(v) for v in steps if v > 0]))
        return levels

    def logTickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        if self._within_decade:
            strings = [f"{10.0**value * scale:.{self._places}f}" for value in values]
        else:
            strings = super().logTickStrings(values, scale, spacing)
        return [text if value in self._labelled else "" for value, text in zip(values, strings, strict=True)]

    def _label_px(self) -> float:
        metrics = QFontMetrics(self.style.get("tickFont") or self.font())
        if self.orientation in ("left", "right"):
            return float(metrics.height())
        return float(metrics.horizontalAdvance("5·10⁻¹⁰"))  # the widest label a log axis draws


class IntegerAxis(LogAxis):
    """An axis of whole numbers (an index, a count): ticks only at integers; in log mode as
    :class:`LogAxis`."""

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:  # noqa: N802, N803
        if self.logMode:
            return super().tickValues(minVal, maxVal, size)
        levels = [
            (spacing, [v for v in values if v == round(v)])
            for spacing, values in super().tickValues(minVal, maxVal, size)
            if spacing >= 1
        ]
        if levels:
            return levels
        low, high = math.ceil(min(minVal, maxVal)), math.floor(max(minVal, maxVal))
        return [(1.0, [float(v) for v in range(low, high + 1)])] if high - low < 100 else []
