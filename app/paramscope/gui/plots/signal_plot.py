"""Signal propagation plot: activation std and gradient std against layer depth, log y.

One run (the Backward panel's last backward) draws two curves; a comparison of initialization
schemes (:mod:`paramscope.core.init.compare`) draws one pair per scheme in one colour, activation
solid and gradient dashed, so "what does this scheme do to the signal" reads off one plot.
The bottom axis names the layer at each depth, as many names as fit without overlapping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontMetrics
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from paramscope.core.backward.signal import SignalPoint
from paramscope.gui.palette import plot_colors
from paramscope.gui.plots.axes import IntegerAxis, LogAxis

ACTIVATION_COLOR = QColor(40, 110, 200)
GRADIENT_COLOR = QColor(200, 60, 40)
# One colour per scheme (Tableau's ten, told apart by most colour-blind readers).
SCHEME_COLORS = [QColor(c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                     "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")]  # fmt: skip
LAYER_LABEL_CHARS = 18  # a longer module name is shortened in the middle on the axis


def _positive(values: Sequence[float | None]) -> np.ndarray:
    """NaN where a value is missing or not positive: a log axis cannot show it (gap, not zero)."""
    out = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    out[~(out > 0)] = np.nan
    return out


def short_name(name: str, limit: int = LAYER_LABEL_CHARS) -> str:
    """``name`` in at most ``limit`` characters, its last dotted parts kept (``…layers.0.linear2``):
    the end of a qualified name says which layer it is. A last part longer than that is cut in
    the middle."""
    if len(name) <= limit:
        return name
    kept = ""
    for part in reversed(name.split(".")):
        candidate = f"{part}.{kept}" if kept else part
        if len(candidate) > limit - 1:
            break
        kept = candidate
    if not kept:
        head = (limit - 1) // 2
        return name[:head] + "…" + name[len(name) - (limit - 1 - head):]
    return "…" + kept


class LayerAxis(IntegerAxis):
    """A bottom axis that names the layer at each depth (``set_names``), thinned to fit.

    Every ``k``-th name is drawn, ``k`` chosen from the axis' width and the widest name, so the
    labels never overlap; zooming in shows more of them. Without names (no backward yet), whole
    numbers: there is no layer 0.5.
    """

    def __init__(self) -> None:
        super().__init__("bottom")
        self.names: dict[int, str] = {}
        # pyqtgraph drops a tick level whose text fills 80% of the axis: ours is spaced already
        self.setStyle(textFillLimits=[(0, 0.99)])

    def set_names(self, names: dict[int, str]) -> None:
        self.names = {i: short_name(n) for i, n in names.items()}
        self.picture = None  # pyqtgraph caches the drawn axis
        self.update()

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:  # noqa: N802, N803
        if not self.names:
            return super().tickValues(minVal, maxVal, size)
        low, high = sorted((minVal, maxVal))
        shown = [i for i in sorted(self.names) if low <= i <= high]
        if not shown:
            return []
        metrics = QFontMetrics(self.style.get("tickFont") or self.font())
        slot = max(metrics.horizontalAdvance(self.names[i]) for i in shown) + 14
        step = max(1, math.ceil(len(shown) * slot / max(size, 1.0)))
        return [(float(step), [float(i) for i in shown[::step]])]

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        if not self.names:
            return super().tickStrings(values, scale, spacing)
        return [self.names.get(int(round(v)), "") for v in values]


class SignalPlot(QWidget):
    """Two curves over the leaf layer calls of the last backward (``set_points``), or one pair
    per initialization scheme (``set_comparison``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[SignalPoint] = []
        self.schemes: list[tuple[str, list[SignalPoint]]] = []  # a comparison, when shown
        self.scheme_curves: list[pg.PlotDataItem] = []
        self.axis = LayerAxis()
        self.plot_widget = pg.PlotWidget(axisItems={"bottom": self.axis, "left": LogAxis("left")})  # colours: palette.py
        self.plot = self.plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "layer (leaf module calls, forward order)")
        self.plot.setLabel("left", "std")
        self.legend = self.plot.addLegend(offset=(-10, 10))
        # A comparison's legend sits in a row under the x axis: inside, it covered the curves.
        self.scheme_legend = pg.LegendItem(colCount=3)
        self.empty_text = "Run backward to see how the signal changes through depth."
        self.plot.setLogMode(x=False, y=True)
        self.activation_curve = self.plot.plot(
            [], [], pen=pg.mkPen(ACTIVATION_COLOR, width=2), symbol="o", symbolSize=5,
            symbolBrush=ACTIVATION_COLOR, name="activation std (forward)", connect="finite",
        )  # fmt: skip
        self.gradient_curve = self.plot.plot(
            [], [], pen=pg.mkPen(GRADIENT_COLOR, width=2), symbol="t", symbolSize=5,
            symbolBrush=GRADIENT_COLOR, name="gradient std (backward)", connect="finite",
        )  # fmt: skip
        self.only_parametrized = QCheckBox("only layers with parameters")
        self.only_parametrized.setToolTip("Hide activations such as ReLU, keep Linear/Conv/...")
        self.only_parametrized.toggled.connect(self._redraw)
        self.message = QLabel(self.empty_text)
        self.message.setWordWrap(True)  # a long model name must not widen the Backward dock
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(self.only_parametrized)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.message)

    def set_points(self, points: Sequence[SignalPoint]) -> None:
        """Show one run (a comparison shown before is dropped)."""
        self.points = list(points)
        self.schemes = []
        self._redraw()

    def set_comparison(self, schemes: Sequence[tuple[str, Sequence[SignalPoint]]]) -> None:
        """Show one activation and one gradient curve per ``(label, points)`` scheme."""
        self.schemes = [(label, list(points)) for label, points in schemes]
        self.points = []
        self._redraw()

    def _filtered(self, points: Sequence[SignalPoint]) -> list[SignalPoint]:
        if self.only_parametrized.isChecked():
            return [p for p in points if p.has_parameters]
        return list(points)

    def shown_points(self) -> list[SignalPoint]:
        return self._filtered(self.points)

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, activation std, gradient std of the points shown (NaN where not drawable)."""
        return _xy(self.shown_points())

    def scheme_data(self) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """Per scheme shown: label, x, activation std, gradient std (NaN where not drawable)."""
        return [(label, *_xy(self._filtered(points))) for label, points in self.schemes]

    def _redraw(self) -> None:
        for curve in self.scheme_curves:
            self.plot.removeItem(curve)
        self.scheme_curves = []
        self.legend.clear()
        self.scheme_legend.clear()
        if self.scheme_legend.scene() is not None:
            self.plot.layout.removeItem(self.scheme_legend)
            self.plot.scene().removeItem(self.scheme_legend)
        if self.schemes:
            self._draw_schemes()
            return
        x, activations, gradients = self.curves()
        # log mode: pyqtgraph takes log10 itself; NaN values leave gaps (connect="finite")
        for curve, values in ((self.activation_curve, activations), (self.gradient_curve, gradients)):
            if len(x):
                self.legend.addItem(curve, curve.name())
            if np.isfinite(values).any():
                curve.setData(x, values)
            else:  # nothing drawable (e.g. one layer whose output gradient is all ones)
                curve.setData([], [])
        self.axis.set_names({p.index: p.module for p in self.shown_points()})
        if not len(x):
            self.message.setText(self.empty_text)
            return
        last = self.shown_points()[-1]
        act = "-" if last.activation_std is None else f"{last.activation_std:.3g}"
        grad = "-" if last.gradient_std is None else f"{last.gradient_std:.3g}"
        self.message.setText(
            f"{len(x)} layer calls; last ({last.module}, {last.type_name}): activation std {act}, "
            f"gradient std {grad}. Missing points: zero or no gradient (log scale)."
        )

    def _draw_schemes(self) -> None:
        """One colour per scheme: activation solid with circles, gradient dashed with triangles."""
        for curve in (self.activation_curve, self.gradient_curve):
            curve.setData([], [])
        names: dict[int, str] = {}
        for number, (label, points) in enumerate(self.schemes):
            color = SCHEME_COLORS[number % len(SCHEME_COLORS)]
            x, activations, gradients = _xy(self._filtered(points))
            names.update({p.index: p.module for p in self._filtered(points)})
            styles = ((activations, Qt.PenStyle.SolidLine, "o"), (gradients, Qt.PenStyle.DashLine, "t"))
            for values, style, symbol in styles:
                drawable = np.isfinite(values).any()
                curve = self.plot.plot(
                    x if drawable else [], values if drawable else [], pen=pg.mkPen(color, width=2, style=style),
                    symbol=symbol, symbolSize=5, symbolBrush=color, connect="finite",
                )  # fmt: skip
                self.scheme_curves.append(curve)
            self.scheme_legend.addItem(self.scheme_curves[-2], label)
        self._show_scheme_legend()
        self.axis.set_names(names)
        self.message.setText(
            f"{len(self.schemes)} schemes on the same input: solid = activation std (forward), "
            "dashed = gradient std (backward). Missing points: zero or no gradient (log scale)."
        )


    def _show_scheme_legend(self) -> None:
        """Put the schemes' legend under the x axis, in the plot's colours (palette.py's)."""
        background, foreground = plot_colors()
        background.setAlpha(200)
        self.scheme_legend.setLabelTextColor(foreground)
        self.scheme_legend.setBrush(background)
        self.plot.layout.addItem(self.scheme_legend, 4, 1)


def _xy(points: Sequence[SignalPoint]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.array([p.index for p in points], dtype=np.float64)
    return x, _positive([p.activation_std for p in points]), _positive([p.gradient_std for p in points])
