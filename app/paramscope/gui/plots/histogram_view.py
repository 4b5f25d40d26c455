"""A histogram plot (pyqtgraph) of exact counts, with NaN/Inf shown beside it, never dropped.

:meth:`HistogramView.set_histograms` draws the current histogram, optionally the previous
state (before the last change) and a theoretical density; the plot items are reused, so
thousands of updates cost no new objects. "Zoom to new values" fits the x axis to the current
histogram: after ``normal_(std=0.01)`` over an old range of ±0.4 the new values are otherwise a sliver.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from paramscope.core.model.tensor_stats import Histogram
from paramscope.gui import colors
from paramscope.gui.plots.axes import IntegerAxis
from paramscope.gui.plots.drawn_units import unit_for, unit_text
from paramscope.gui.plots.fitted_title import FittedTitle

Theory = tuple[np.ndarray, np.ndarray, str]  # x, probability density at x, label
LOG_FLOOR = -0.3  # where empty bins sit on the log axis: below 10**0 = one count


def _log_counts(counts: np.ndarray) -> np.ndarray:
    out = np.full(len(counts), LOG_FLOOR, dtype=np.float64)
    positive = counts > 0
    out[positive] = np.log10(counts[positive].astype(np.float64))
    return out


def bars_to_draw(edges: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges and counts as drawn: a constant tensor's single bar centred on its value.

    A constant value ``v`` gets the range ``v ± 0.5`` and falls in the bin starting at ``v``,
    so zeros read as small positive values. One filled bin holding the range's midpoint is
    that case: draw one bar of the same width centred on the midpoint.
    """
    filled = np.flatnonzero(counts)
    if len(counts) > 1 and len(filled) == 1:
        i = int(filled[0])
        middle = (float(edges[0]) + float(edges[-1])) / 2
        if edges[i] <= middle <= edges[i + 1]:
            half = (float(edges[i + 1]) - float(edges[i])) / 2
            return np.array([middle - half, middle + half]), counts[i : i + 1]
    return edges, counts


class HistogramView(QWidget):
    """Counts over bin edges as a filled step plot, with a log-y toggle and NaN/Inf counts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # colours follow the light/dark scheme (palette.py); whole counts, log labels that fit (axes.py)
        self.plot_widget = pg.PlotWidget(axisItems={"left": IntegerAxis("left")})
        self.plot = self.plot_widget.getPlotItem()
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("left", "count")
        self.plot.setMenuEnabled(True)
        # The legend sits in a row of its own under the x axis: inside the plot it covered bars.
        self.legend = pg.LegendItem(colCount=3)
        self.plot.layout.addItem(self.legend, 4, 1)
        self.plot.legend = self.legend  # palette.py restyles it with the plot
        self._legend_key: tuple[str, ...] = ()
        self.fitted_title = FittedTitle(self.plot_widget)  # a long tensor name pushed the bars out of view
        self._log_shown = False
        self._unit = 1.0  # x values are drawn divided by this (see drawn_units)
        self._add_plot_items()
        self._lay_out()
        self.current: Histogram | None = None
        self.previous: Histogram | None = None
        self.theory: Theory | None = None
        self.labels = ("now", "before")
        self.clear("Select a parameter to see its histogram.")

    def _add_plot_items(self) -> None:
        """The current and previous histograms (filled steps) and the theory curve, hidden."""

        def brush(color) -> pg.QtGui.QColor:
            c = pg.mkColor(color)
            c.setAlpha(90)
            return c

        self.current_item = pg.PlotDataItem(
            stepMode="center", fillLevel=0, pen=pg.mkPen(colors.CURRENT_PLOT, width=1.5),
            brush=brush(colors.CURRENT_PLOT),
        )  # fmt: skip
        self.previous_item = pg.PlotDataItem(
            stepMode="center", fillLevel=0, pen=pg.mkPen(colors.PREVIOUS_PLOT, width=1.5),
            brush=brush(colors.PREVIOUS_PLOT),
        )  # fmt: skip
        self.theory_item = pg.PlotDataItem(pen=pg.mkPen(colors.THEORY_PLOT, width=2, style=Qt.PenStyle.DashLine))
        for item in (self.previous_item, self.current_item, self.theory_item):
            self.plot.addItem(item)
            item.hide()

    def _lay_out(self) -> None:
        """The plot and its message; beside them Log y, Zoom to new values and the NaN/Inf counts."""
        self.log_y = QCheckBox("Log y", self)
        self.log_y.toggled.connect(self._redraw)
        self.zoom_new = QCheckBox("Zoom to new\nvalues", self)
        self.zoom_new.setToolTip("Fit the x axis to the new values (not to the old ones drawn behind them)")
        self.zoom_new.toggled.connect(self._redraw)
        self.zoom_new.setEnabled(False)  # until there is an old histogram to zoom away from
        self.nonfinite_label = QLabel(self)
        self.nonfinite_label.setTextFormat(Qt.TextFormat.RichText)
        self.nonfinite_label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.nonfinite_label.setMinimumWidth(110)
        self.message = QLabel(self)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        side = QVBoxLayout()
        side.addWidget(self.log_y)
        side.addWidget(self.zoom_new)
        side.addWidget(self.nonfinite_label)
        side.addStretch(1)
        body = QHBoxLayout(self)
        body.setContentsMargins(2, 2, 2, 2)
        plot_column = QVBoxLayout()
        plot_column.addWidget(self.plot_widget, 1)
        plot_column.addWidget(self.message)
        body.addLayout(plot_column, 1)
        body.addLayout(side)

    # --- public API --------------------------------------------------------------------------
    def set_histograms(
        self,
        current: Histogram,
        previous: Histogram | None = None,
        theory: Theory | None = None,
        *,
        title: str = "",
        labels: tuple[str, str] = ("now", "before"),
    ) -> None:
        """Draw ``current``, with ``previous`` (before the last change) and a density overlaid.

        Args:
            current: the histogram to show.
            previous: the same tensor's histogram before the last change, drawn in a second colour.
            theory: ``(x, pdf, label)``: a probability density, scaled to ``current``'s counts
                (``finite elements * bin width``) so it lies over the bars.
            title: shown above the plot (e.g. the tensor name, or "gradient of ...").
            labels: legend names of ``current`` and ``previous`` (e.g. "after (preview)", "before").
        """
        self.current, self.previous, self.theory = current, previous, theory
        self.labels = labels
        self._set_title(title)
        self._redraw()

    def clear(self, message: str = "") -> None:
        """Show no histogram, only ``message``."""
        self.current = self.previous = None
        self.theory = None
        self._set_title("")
        self._redraw()
        self.message.setText(message)
        self.message.setVisible(bool(message))

    # --- drawing -----------------------------------------------------------------------------
    def _set_title(self, title: str) -> None:
        if title != self.fitted_title.text:  # text layout is the costliest part of an update
            self.fitted_title.set(title)

    def _redraw(self) -> None:
        log = self.log_y.isChecked()
        if log != self._log_shown:
            self._log_shown = log
            self.plot.getAxis("left").setLogMode(False, log)
            self.plot.setLabel("left", "count (log)" if log else "count")
        fill = LOG_FLOOR if log else 0.0
        self._set_unit()
        shown: list[tuple[str, pg.PlotDataItem]] = []
        for item, hist, label in (
            (self.current_item, self.current, self.labels[0]),
            (self.previous_item, self.previous, self.labels[1]),
        ):
            if hist is None or len(hist.counts) == 0:
                item.hide()
                continue
            edges, counts = bars_to_draw(np.asarray(hist.edges, dtype=np.float64), np.asarray(hist.counts))
            y = _log_counts(counts) if log else counts.astype(np.float64)
            item.setFillLevel(fill)
            item.setData(edges / self._unit, y)
            item.show()
            shown.append((label, item))
        if self.theory is not None and self.current is not None and len(self.current.counts):
            x, density, label = self.theory
            edges = np.asarray(self.current.edges, dtype=np.float64)
            scale = float(np.sum(self.current.counts)) * float(edges[1] - edges[0])
            y = np.asarray(density, dtype=np.float64) * scale
            if log:
                y = np.where(y > 0, np.log10(np.maximum(y, 1e-300)), np.nan)
            self.theory_item.setData(np.asarray(x, dtype=np.float64) / self._unit, y, connect="finite")
            self.theory_item.show()
            shown.append((label, self.theory_item))
        else:
            self.theory_item.hide()
        self._update_legend(shown if len(shown) > 1 else [])
        self._update_side()
        has_bars = bool(self.current is not None and len(self.current.counts))
        if self.current is not None:
            note = self.current.note or ("" if has_bars else "no finite values to plot")
            self.message.setText(note)
            self.message.setVisible(bool(note))
        self.zoom_new.setEnabled(self.previous_item.isVisible())
        if has_bars:
            self._fit_range()
        # The wheel never zooms into negative counts (or below the log floor).
        self.plot.getViewBox().setLimits(yMin=LOG_FLOOR if log else 0.0)

    def _fit_range(self) -> None:
        """Everything drawn, or (Zoom to new values) the current histogram's range on x."""
        view_box = self.plot.getViewBox()
        assert self.current is not None
        if self.zoom_new.isChecked() and self.previous_item.isVisible():
            edges, _ = bars_to_draw(np.asarray(self.current.edges, dtype=np.float64), np.asarray(self.current.counts))
            view_box.setAutoVisible(y=True)  # y fits the bars in view, not the old ones outside it
            view_box.enableAutoRange(axis=view_box.YAxis)
            view_box.setXRange(float(edges[0]) / self._unit, float(edges[-1]) / self._unit, padding=0.02)
        else:
            view_box.setAutoVisible(y=False)
            self.plot.enableAutoRange()

    def x_range(self) -> tuple[float, float]:
        """The x interval in view, as the next paint shows it (tests, and what a user sees)."""
        view_box = self.plot.getViewBox()
        view_box.prepareForPaint()  # an automatic range is otherwise computed only when painting
        low, high = view_box.viewRange()[0]
        return float(low) * self._unit, float(high) * self._unit

    def _set_unit(self) -> None:
        shown = [h.edges for h in (self.current, self.previous) if h is not None and len(h.counts)]
        unit = unit_for(max((float(np.max(np.abs(edges))) for edges in shown), default=0.0))
        if unit != self._unit:  # (AxisItem.setScale fails itself: its scaled range overflows)
            self._unit = unit
            axis = self.plot.getAxis("bottom")
            axis.setLabel(unit_text(unit).strip())
            axis.showLabel(unit != 1.0)

    def _update_legend(self, shown: list[tuple[str, pg.PlotDataItem]]) -> None:
        key = tuple(label for label, _ in shown)
        if key == self._legend_key:
            return  # rebuilding the legend on every update would create label items each time
        self._legend_key = key
        self.legend.clear()
        for label, item in shown:
            self.legend.addItem(item, label)

    def _update_side(self) -> None:
        hist = self.current
        if hist is None:
            self.nonfinite_label.setText("")
            return
        rows = [("finite", int(np.sum(hist.counts))), ("NaN", hist.nan), ("+Inf", hist.posinf), ("-Inf", hist.neginf)]
        lines = []
        for label, count in rows:
            text = f"{label}: {count:,}"
            if label != "finite" and count:
                text = f"<b style='color:{colors.on_window(colors.NONFINITE_TEXT).name()}'>{text}</b>"
            lines.append(text)
        before = self.previous
        if before is not None and before.nan + before.posinf + before.neginf:
            lines.append(f"before: {before.nan:,} NaN, {before.posinf + before.neginf:,} Inf")
        self.nonfinite_label.setText("<br>".join(lines))
