"""A heatmap of the selected 2-D weight: a diverging colour map centred at 0, with a colour bar.

What is drawn comes from :func:`paramscope.core.model.heatmap.heatmap_of` (rows × columns,
block-reduced when large, "downsampled k×" in the title). Reducing reads every value, so a
tensor over :data:`BACKGROUND_NUMEL` elements (or one still to be read from its file) is reduced
in a worker; the result is drawn on the GUI thread unless the selection or the values changed
meanwhile.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from paramscope.core.edit.session import Session
from paramscope.core.edit.weights import weights, weights_read
from paramscope.core.model.dequantize import quantized_in
from paramscope.core.model.experts import experts_layout_of
from paramscope.core.model.heatmap import MAX_DISPLAY, Heatmap, as_matrix, block_maxabs, heatmap_of
from paramscope.core.tasks import TaskState
from paramscope.gui.plots.drawn_units import SHORT_LABELS, unit_for, unit_text
from paramscope.gui.plots.fitted_title import FittedTitle
from paramscope.gui.plots.when_shown import RefreshWhenShown
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker

__all__ = ["BACKGROUND_NUMEL", "DIVERGING", "MAX_DISPLAY", "HeatmapView", "as_matrix", "block_maxabs"]

#: Tensors with more elements than a full-size heatmap are reduced in a worker.
BACKGROUND_NUMEL = MAX_DISPLAY * MAX_DISPLAY
# Blue - white - red: zero is white, the sign is the hue (as in most weight visualizations).
DIVERGING = pg.ColorMap(
    [0.0, 0.5, 1.0],
    [(33, 102, 172), (247, 247, 247), (178, 24, 43)],
    name="blue-white-red",
)


class HeatmapView(RefreshWhenShown, QWidget):
    """Heatmap of the selected tensor (rows down, columns across), refreshed when it changes.

    Signals:
        shown(str): the heatmap (or the reason there is none) of this tensor is drawn.
    """

    shown = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
        self.fitted_title = FittedTitle(self.plot_widget)  # "NAME [151936, 896], downsampled ..." was cut
        self.plot.invertY(True)  # row 0 at the top, as print(weight) shows it
        self.plot.setAspectLocked(False)
        self.plot.setLabel("left", "row (output)")
        self.plot.setLabel("bottom", "column (input)")
        self.image = pg.ImageItem()
        self.image.setColorMap(DIVERGING)
        self.plot.addItem(self.image)
        self.color_bar = pg.ColorBarItem(values=(-1, 1), colorMap=DIVERGING, interactive=False, label="value")
        self.color_bar.setImageItem(self.image, insert_in=self.plot)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.plot_widget, 1)
        layout.addWidget(self.message)
        self.array: np.ndarray | None = None  # what is drawn (after any downsampling)
        self.factor = 1
        self.title = ""
        self._dirty = True
        self.worker = TaskWorker(self)  # reduces large tensors
        self._asked: tuple | None = None  # what the worker's result must still match to be drawn
        self.worker.finished.connect(self._on_reduced)
        self.worker.failed.connect(self._on_failed)

        state.sessionChanged.connect(self._invalidate)
        state.tensorSelected.connect(lambda _n: self._invalidate())
        state.tensorsChanged.connect(self._on_changed)
        self.refresh()

    def _on_changed(self, names: tuple[str, ...]) -> None:
        if self.state.selected_tensor in names:
            self._invalidate()

    def _invalidate(self) -> None:
        # Reducing a large matrix costs a full read: do it only when the heatmap is on screen.
        self.worker.cancel()  # its result would be stale
        self._asked = None
        self.mark_stale()

    def _what(self) -> tuple:
        """The selection and the model's values now: a reduction of other ones is stale."""
        session = self.state.session
        return id(session), session.generation, session.selected_tensor

    def refresh(self) -> None:
        self._dirty = False
        name = self.state.selected_tensor if self.state.has_session else None
        if name is None:
            self.worker.cancel()
            self._clear("Select a 2-D parameter (a weight matrix) to see its heatmap.", "")
            return
        session = self.state.session
        info = session.report.tensor(name)
        to_load = session.unread_bytes(weights_read(session, name)) > 0  # (lazily opened: read in the worker)
        experts = experts_layout_of(session.model, name, session.tensor(name))
        if info.numel <= BACKGROUND_NUMEL and not to_load:
            self.worker.cancel()
            self._draw(_weights_heatmap(session, name, experts))
            return
        self._asked = self._what()
        self.message.setText(f"{name}: computing the heatmap…")
        self.message.setVisible(True)
        self.worker.start(lambda task_state: _weights_heatmap(session, name, experts, task_state), f"heatmap of {name}")

    def refresh_failed(self, message: str) -> None:
        self._clear(f"{self.state.selected_tensor or 'heatmap'}: {message}", self.state.selected_tensor or "")

    def _on_reduced(self, heatmap: Heatmap) -> None:
        asked, self._asked = self._asked, None
        if self.state.has_session and asked == self._what():
            self._draw(heatmap)

    def _on_failed(self, message: str) -> None:
        if self._asked is not None and self.state.has_session and self._asked == self._what():
            self._clear(" ".join(message.split()), self.state.selected_tensor or "")
        self._asked = None

    def _draw(self, heatmap: Heatmap) -> None:
        if heatmap.array is None:
            self._clear(heatmap.message, heatmap.name)
            return
        array = heatmap.array
        self.array, self.factor, self.title = array, heatmap.factor, heatmap.title
        self.fitted_title.set(heatmap.title)
        bound = float(np.abs(array).max()) or 1.0
        unit = unit_for(bound, SHORT_LABELS)  # in a unit named in the colour bar's title
        self.image.setImage(array.T / unit, autoLevels=False)  # ImageItem's first axis is x (columns)
        rows, cols = heatmap.shape
        self.image.setRect(0, 0, cols, rows)  # axes in element indices
        self.color_bar.getAxis("left").setLabel("value" + unit_text(unit))
        self.color_bar.setLevels((-bound / unit, bound / unit))
        self.image.show()
        self.plot.autoRange()
        notes = []
        if heatmap.nonfinite:
            notes.append(f"{heatmap.nonfinite:,} NaN/Inf values drawn as 0 (see the histogram's counts)")
        self.message.setText("; ".join(notes))
        self.message.setVisible(bool(notes))
        self.shown.emit(heatmap.name)

    def _clear(self, message: str, name: str) -> None:
        self.array = None
        self.factor = 1
        self.title = ""
        self.fitted_title.set("")
        self.image.hide()
        self.message.setText(message)
        self.message.setVisible(True)
        self.shown.emit(name)


def _weights_heatmap(session: Session, name: str, experts: bool | None, state: TaskState | None = None) -> Heatmap:
    """The heatmap of ``name``'s weights: dequantized where it is stored quantized (its codes'
    heatmap shows the scales' blocks, its MXFP4 bytes nothing)."""
    heatmap = heatmap_of(name, weights(session, name), state, experts)
    return dataclasses.replace(heatmap, dequantized=True) if quantized_in(name, session.report) is not None else heatmap
