"""Signal propagation plot: activation std and gradient std against layer depth, log y."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from paramscope.core.signal import SignalPoint

ACTIVATION_COLOR = QColor(40, 110, 200)
GRADIENT_COLOR = QColor(200, 60, 40)


def _positive(values: Sequence[float | None]) -> np.ndarray:
    """NaN where a value is missing or not positive: a log axis cannot show it (gap, not zero)."""
    out = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    out[~(out > 0)] = np.nan
    return out


class SignalPlot(QWidget):
    """Two curves over the leaf layer calls of the last backward (``set_points``)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.points: list[SignalPoint] = []
        self.plot_widget = pg.PlotWidget()  # colours follow the light/dark scheme (palette.py)
        self.plot = self.plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "layer depth (leaf module calls, forward order)")
        self.plot.setLabel("left", "std")
        self.plot.addLegend(offset=(-10, 10))
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
        self.message = QLabel("Run backward to see how the signal changes through depth.")
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
        self.points = list(points)
        self._redraw()

    def shown_points(self) -> list[SignalPoint]:
        if self.only_parametrized.isChecked():
            return [p for p in self.points if p.has_parameters]
        return list(self.points)

    def curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, activation std, gradient std of the points shown (NaN where not drawable)."""
        shown = self.shown_points()
        x = np.array([p.index for p in shown], dtype=np.float64)
        return x, _positive([p.activation_std for p in shown]), _positive([p.gradient_std for p in shown])

    def _redraw(self) -> None:
        x, activations, gradients = self.curves()
        # log mode: pyqtgraph takes log10 itself; NaN values leave gaps (connect="finite")
        for curve, values in ((self.activation_curve, activations), (self.gradient_curve, gradients)):
            if np.isfinite(values).any():
                curve.setData(x, values)
            else:  # nothing drawable (e.g. one layer whose output gradient is all ones)
                curve.setData([], [])
        if not len(x):
            self.message.setText("Run backward to see how the signal changes through depth.")
            return
        last = self.shown_points()[-1]
        act = "-" if last.activation_std is None else f"{last.activation_std:.3g}"
        grad = "-" if last.gradient_std is None else f"{last.gradient_std:.3g}"
        self.message.setText(
            f"{len(x)} layer calls; last ({last.module}, {last.type_name}): activation std {act}, "
            f"gradient std {grad}. Missing points: zero or no gradient (log scale)."
        )
