"""A layers x steps heat strip of one series metric: where weights grew, froze or broke.

Rows are tensors (or modules) top to bottom, columns are checkpoints by step. Colours map
log10 of the metric (relative changes and norms span orders of magnitude); an exact zero (a
frozen tensor, an all-zero bias) is a flat grey outside the map, a value that could not be
computed (a change to or from a checkpoint holding NaN) is pink, a point that does not exist
(the first step's change, a tensor missing from a checkpoint) is left empty, and a checkpoint where
the tensor holds NaN or Inf gets a red cross whatever the metric. Markers carry a dark outline, so
they read on every colour of the map and on light and dark windows alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QCursor
from PySide6.QtWidgets import QLabel, QToolTip, QVBoxLayout, QWidget

from paramscope.core.runs.series import SeriesPoint, SeriesRow
from paramscope.gui import colors
from paramscope.gui.number_text import number_text

# key -> (menu label, colour bar label). No plot title: a long one set the plot's minimum width.
METRICS: dict[str, tuple[str, str]] = {
    "rel_prev": ("Change from previous", "log10 change from previous"),
    "rel_first": ("Change from first", "log10 change from first"),
    "norm": ("Norm", "log10 norm"),
    "std": ("Std", "log10 std"),
    "max_abs": ("Max |w|", "log10 max |w|"),
    "nonfinite": ("NaN + Inf count", "log10 (NaN + Inf)"),
}
COLORMAP = pg.colormap.get("viridis")  # no grey, pink or red in it: the special cells stay distinct
ZERO_COLOR = QColor(150, 150, 150)
UNDEFINED_COLOR = colors.NONFINITE_BACKGROUND
CROSS_COLOR = QColor(235, 30, 30)
HALO_COLOR = QColor(0, 0, 0)
LABEL_CHARS = 28  # longer names elide in the middle on the axis; the tooltip has them whole
ROW_LABEL_PX = 15  # at least this many pixels between two names on the y axis
STEP_LABEL_PX = 48
CROSS_PX = (9, 18)  # a NaN/Inf cross is this many pixels across at least and at most


def metric_value(point: SeriesPoint | None, metric: str) -> float | None:
    """The metric of one point; None where there is no point or the metric has no value."""
    if point is None:
        return None
    if metric == "nonfinite":
        return float(point.nan + point.inf)
    value = getattr(point, metric)
    return None if value is None else float(value)


@dataclass
class StripData:
    """What the strip shows: per row and step the metric, whether it exists, whether NaN/Inf is there."""

    names: list[str]
    steps: list[str]
    values: np.ndarray  # (rows, steps) float64; NaN where absent or undefined
    present: np.ndarray  # (rows, steps) bool: a value was computed (it may be NaN)
    nonfinite: np.ndarray  # (rows, steps) bool: the tensor holds NaN or Inf at that step


def strip_data(rows: list[SeriesRow], steps: list[str], metric: str) -> StripData:
    shape = (len(rows), len(steps))
    values = np.full(shape, np.nan)
    present = np.zeros(shape, dtype=bool)
    nonfinite = np.zeros(shape, dtype=bool)
    for r, row in enumerate(rows):
        for c, point in enumerate(row.points):
            value = metric_value(point, metric)
            if value is not None:
                values[r, c], present[r, c] = value, True
            nonfinite[r, c] = point is not None and point.nan + point.inf > 0
    return StripData([row.name for row in rows], steps, values, present, nonfinite)


def cell_colors(values: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """RGBA bytes per cell (rows, steps, 4) and the log10 levels of the colour map.

    Positive values map by log10 between the smallest and largest; +Inf takes the top colour.
    """
    rgba = np.zeros((*values.shape, 4), dtype=np.uint8)  # transparent: absent
    with np.errstate(invalid="ignore"):
        positive = present & np.isfinite(values) & (values > 0)
        top = present & np.isposinf(values)
        zero = present & (values == 0)
    logs = np.log10(values[positive])
    lo, hi = (float(logs.min()), float(logs.max())) if logs.size else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    scaled = np.ones(values.shape)
    scaled[positive] = (logs - lo) / (hi - lo)
    mapped = positive | top
    if mapped.any():
        rgba[mapped] = COLORMAP.map(scaled[mapped], mode="byte")
    rgba[zero] = ZERO_COLOR.getRgb()
    rgba[present & np.isnan(values)] = UNDEFINED_COLOR.getRgb()
    return rgba, (lo, hi)


def elided(name: str, limit: int = LABEL_CHARS) -> str:
    if len(name) <= limit:
        return name
    keep = limit - 1
    return name[: keep // 2] + "…" + name[len(name) - (keep - keep // 2) :]


def _haloed(width: float) -> tuple[pg.PlotDataItem, pg.PlotDataItem]:
    halo = pg.PlotDataItem(pen=pg.mkPen(HALO_COLOR, width=width + 2.5), connect="pairs")
    return halo, pg.PlotDataItem(connect="pairs")


class HeatStrip(QWidget):
    """The strip, its colour bar and a legend line; hover a cell for its numbers, click it to pick it.

    Signals:
        cellClicked(int, int): a cell was clicked (row, column).
    """

    cellClicked = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
        self.plot.invertY(True)  # the first layer at the top, as the table lists it
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.setLabel("bottom", "step")
        self.plot.getAxis("bottom").setStyle(hideOverlappingLabels=False)  # the first step's label half over the edge
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        # A cross of fixed pixel size: a 51-layer strip has rows 5 px high, where a cross drawn
        # inside the cell was a flat red dash; it may overlap its neighbours, it stays a cross.
        self.cross = pg.ScatterPlotItem(symbol="x", pxMode=True, pen=pg.mkPen(HALO_COLOR, width=1), brush=CROSS_COLOR)
        self.selection_halo, self.selection = _haloed(2.0)
        self.selection.setPen(pg.mkPen("w", width=2.0))
        for item in (self.cross, self.selection_halo, self.selection):
            self.plot.addItem(item)
        self.color_bar = pg.ColorBarItem(values=(0, 1), colorMap=COLORMAP, interactive=False, colorMapMenu=False)
        self.plot.layout.addItem(self.color_bar, 2, 5)
        self.plot.layout.setColumnFixedWidth(4, 5)
        self.legend = QLabel(self)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setText(_legend_text())
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.legend)
        self.rows: list[SeriesRow] = []
        self.metric = "rel_prev"
        self.data: StripData | None = None
        self.rgba: np.ndarray | None = None
        self.selected: tuple[int, int] | None = None
        view_box = self.plot.getViewBox()
        view_box.sigResized.connect(self._update_ticks)
        view_box.sigRangeChanged.connect(self._update_ticks)
        scene = self.plot_widget.scene()
        scene.sigMouseMoved.connect(self._hover)
        scene.sigMouseClicked.connect(self._clicked)
        self.show_rows([], [], self.metric)

    # --- data -----------------------------------------------------------------------------------
    def show_rows(self, rows: list[SeriesRow], steps: list[str], metric: str | None = None) -> None:
        """Draw ``rows`` (tensors or modules) over the checkpoints labelled ``steps``."""
        self.rows = rows
        if metric is not None:
            self.metric = metric
        self.selected = None
        self.data = strip_data(rows, steps, self.metric)
        self._render()

    def set_metric(self, metric: str) -> None:
        selected = self.selected
        self.show_rows(self.rows, self.data.steps if self.data else [], metric)
        if selected is not None:
            self.select_cell(*selected)

    def _render(self) -> None:
        data = self.data
        assert data is not None
        empty = not data.names or not data.steps
        for item in (self.image, self.cross, self.selection_halo, self.selection):
            item.setVisible(not empty)
        self.color_bar.setVisible(not empty)
        self.legend.setVisible(not empty)
        self.message.setVisible(empty)
        if empty:
            self.rgba = None
            self.message.setText("File > Open series… shows here how each layer moved over a run's checkpoints.")
            return
        self.rgba, levels = cell_colors(data.values, data.present)
        self.image.setImage(self.rgba.transpose(1, 0, 2), autoLevels=False)  # ImageItem's first axis is x
        self.image.setRect(0, 0, len(data.steps), len(data.names))
        self.color_bar.setLevels(levels)
        self.color_bar.axis.setLabel(METRICS[self.metric][1])
        cells = np.argwhere(data.nonfinite)
        self.cross.setData(x=cells[:, 1] + 0.5, y=cells[:, 0] + 0.5)
        self._draw_selection()
        self.plot.getViewBox().setLimits(xMin=-0.5, xMax=len(data.steps) + 0.5, yMin=-0.5, yMax=len(data.names) + 0.5)
        self.plot.getViewBox().setRange(xRange=(0, len(data.steps)), yRange=(0, len(data.names)), padding=0.01)
        self._update_ticks()

    # --- cells ------------------------------------------------------------------------------------
    def select_cell(self, row: int, col: int) -> None:
        """Outline a cell (the one whose histograms are shown)."""
        self.selected = (row, col)
        self._draw_selection()

    def _draw_selection(self) -> None:
        if self.selected is None:
            self.selection_halo.setData([], [])
            self.selection.setData([], [])
            return
        r, c = self.selected
        xs = np.array([c, c + 1, c + 1, c + 1, c + 1, c, c, c], dtype=float)
        ys = np.array([r, r, r, r + 1, r + 1, r + 1, r + 1, r], dtype=float)
        self.selection_halo.setData(xs, ys)
        self.selection.setData(xs, ys)

    def cell_center(self, row: int, col: int) -> QPointF:
        """Where the cell's centre is, in the plot widget's viewport coordinates (tests click there)."""
        scene_point = self.plot.getViewBox().mapViewToScene(QPointF(col + 0.5, row + 0.5))
        return QPointF(self.plot_widget.mapFromScene(scene_point))

    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        data = self.data
        view_box = self.plot.getViewBox()
        if data is None or self.rgba is None or not view_box.sceneBoundingRect().contains(scene_pos):
            return None
        point = view_box.mapSceneToView(scene_pos)
        row, col = math.floor(point.y()), math.floor(point.x())
        if 0 <= row < len(data.names) and 0 <= col < len(data.steps):
            return row, col
        return None

    def tooltip_text(self, row: int, col: int) -> str:
        """The exact numbers of one cell: the metric shown first, then every column of the table."""
        data = self.data
        assert data is not None
        point = self.rows[row].points[col]
        head = f"{data.names[row]}  ·  {data.steps[col]}"
        if point is None:
            return f"{head}\nabsent from this checkpoint"
        value = metric_value(point, self.metric)
        lines = [head, f"{METRICS[self.metric][0]}: {number_text(value, 6)}"]
        if value is None:
            lines[-1] += " (no checkpoint before, or the shape changed)"
        elif math.isnan(value):
            lines[-1] += " (undefined: NaN/Inf here or in the checkpoint compared with)"
        lines.append(f"norm {number_text(point.norm, 6)}   std {number_text(point.std, 6)}   max|w| {number_text(point.max_abs, 6)}")
        lines.append(f"Δprev {number_text(point.rel_prev, 6)}   Δfirst {number_text(point.rel_first, 6)}")
        lines.append(f"NaN {point.nan:,}   Inf {point.inf:,}")
        lines.append("click: histograms at this step and the one before")
        return "\n".join(lines)

    def _hover(self, scene_pos: QPointF) -> None:
        cell = self.cell_at(scene_pos)
        if cell is None:
            QToolTip.hideText()
            return
        QToolTip.showText(QCursor.pos(), self.tooltip_text(*cell), self.plot_widget)

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            event.accept()
            self.select_cell(*cell)
            self.cellClicked.emit(*cell)

    # --- axes ---------------------------------------------------------------------------------------
    def _update_ticks(self) -> None:
        data = self.data
        if data is None or not data.names:
            self.plot.getAxis("left").setTicks([])
            self.plot.getAxis("bottom").setTicks([])
            return
        view_box = self.plot.getViewBox()
        (x0, x1), (y0, y1) = view_box.viewRange()
        height, width = max(1.0, view_box.height()), max(1.0, view_box.width())
        row_stride = max(1, math.ceil(ROW_LABEL_PX * (y1 - y0) / height))
        cell_px = min(height / max(1e-9, y1 - y0), width / max(1e-9, x1 - x0))
        self.cross.setSize(min(CROSS_PX[1], max(CROSS_PX[0], 0.7 * cell_px)))
        col_stride = max(1, math.ceil(STEP_LABEL_PX * (x1 - x0) / width))
        rows = [(r + 0.5, elided(n)) for r, n in enumerate(data.names) if r % row_stride == 0]
        cols = [(c + 0.5, s.removeprefix("step ")) for c, s in enumerate(data.steps) if c % col_stride == 0]
        self.plot.getAxis("left").setTicks([rows])
        self.plot.getAxis("bottom").setTicks([cols])

    def grid_csv(self) -> tuple[list[str], list[list[str]]]:
        """The metric as a table: one row per layer, one column per step ('' where absent)."""
        data = self.data
        assert data is not None
        rows = []
        for r, name in enumerate(data.names):
            cells = [repr(float(data.values[r, c])) if data.present[r, c] else "" for c in range(len(data.steps))]
            rows.append([name, *cells])
        return ["name", *data.steps], rows


def _legend_text() -> str:
    def swatch(color: QColor) -> str:
        return f"<span style='color:{color.name()}; font-size:large'>■</span>"

    return (
        f"{swatch(ZERO_COLOR)} exactly 0 (frozen) &nbsp; {swatch(UNDEFINED_COLOR)} undefined (NaN) &nbsp; "
        f"<b style='color:{CROSS_COLOR.name()}'>✕</b> holds NaN/Inf &nbsp; empty: absent, or first step"
    )
