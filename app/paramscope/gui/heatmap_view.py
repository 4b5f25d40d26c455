"""A heatmap of the selected 2-D weight: a diverging colour map centred at 0, with a colour bar.

Tensors of more dimensions are shown as ``[shape[0], rest]`` (a conv weight: one row per output
channel), as ``weight.flatten(1)`` would. Large matrices are reduced for display by taking, in
each k×k block, the value of largest magnitude, so a single outlier still shows; the title says
"downsampled k×".
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from paramscope.gui.state import AppState

MAX_DISPLAY = 512  # rows and columns drawn at most; more are block-reduced
# Blue - white - red: zero is white, the sign is the hue (as in most weight visualizations).
DIVERGING = pg.ColorMap(
    [0.0, 0.5, 1.0],
    [(33, 102, 172), (247, 247, 247), (178, 24, 43)],
    name="blue-white-red",
)


def as_matrix(tensor: torch.Tensor) -> torch.Tensor | None:
    """The tensor as rows × columns (``flatten(1)`` for 3-D and more), or None for 0-D/1-D."""
    if tensor.dim() < 2:
        return None
    return tensor.detach().reshape(tensor.shape[0], -1)


def block_maxabs(matrix: torch.Tensor, limit: int = MAX_DISPLAY) -> tuple[np.ndarray, int]:
    """Reduce ``matrix`` to at most ``limit`` rows and columns; returns (float64 array, k).

    Each k×k block becomes its element of largest magnitude (sign kept); non-finite values
    count as 0 here (they are reported beside the plot, not hidden in colour).

    Example:
        >>> block_maxabs(torch.tensor([[1.0, -3.0], [2.0, 0.0]]), limit=1)[0].tolist()
        [[-3.0]]
    """
    rows, cols = matrix.shape
    k = max(1, math.ceil(max(rows, cols) / limit))
    values = torch.nan_to_num(matrix.to(torch.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if k == 1:
        return values.numpy(), 1
    pad_r, pad_c = (-rows) % k, (-cols) % k
    values = torch.nn.functional.pad(values, (0, pad_c, 0, pad_r))
    blocks = values.reshape(values.shape[0] // k, k, values.shape[1] // k, k)
    high = blocks.amax(dim=(1, 3))
    low = blocks.amin(dim=(1, 3))
    return torch.where(low.abs() > high.abs(), low, high).numpy(), k


class HeatmapView(QWidget):
    """Heatmap of the selected tensor (rows down, columns across), refreshed when it changes."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.plot_widget = pg.PlotWidget()
        self.plot = self.plot_widget.getPlotItem()
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

        state.sessionChanged.connect(self._invalidate)
        state.tensorSelected.connect(lambda _n: self._invalidate())
        state.tensorsChanged.connect(self._on_changed)
        self.refresh()

    def _on_changed(self, names: tuple[str, ...]) -> None:
        if self.state.selected_tensor in names:
            self._invalidate()

    def _invalidate(self) -> None:
        # Reducing a large matrix costs a full read: do it only when the heatmap is on screen.
        self._dirty = True
        if self.isVisible():
            self.refresh()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self._dirty:
            self.refresh()

    def refresh(self) -> None:
        self._dirty = False
        name = self.state.selected_tensor if self.state.has_session else None
        if name is None:
            self._clear("Select a 2-D parameter (a weight matrix) to see its heatmap.")
            return
        tensor = self.state.session.values(name)
        if tensor.device.type == "meta":
            self._clear(f"{name}: shape only (no values loaded).")
            return
        if tensor.is_complex():
            self._clear(f"{name}: complex values have no heatmap.")
            return
        matrix = as_matrix(tensor)
        if matrix is None or matrix.numel() == 0:
            self._clear(f"{name} has shape {list(tensor.shape)}: a heatmap needs 2 or more dimensions.")
            return
        with torch.no_grad():
            array, k = block_maxabs(matrix)
            nonfinite = int((~torch.isfinite(matrix.float())).sum()) if matrix.is_floating_point() else 0
        self.array, self.factor = array, k
        reshaped = " (flattened to rows × rest)" if tensor.dim() > 2 else ""
        title = f"{name} {list(matrix.shape)}{reshaped}"
        if k > 1:
            title += f", downsampled {k}× (largest |value| per block)"
        self.title = title
        self.plot.setTitle(title)
        bound = float(np.abs(array).max()) or 1.0
        self.image.setImage(array.T, autoLevels=False)  # ImageItem's first axis is x (columns)
        self.image.setRect(0, 0, matrix.shape[1], matrix.shape[0])  # axes in element indices
        self.color_bar.setLevels((-bound, bound))
        self.image.show()
        self.plot.autoRange()
        notes = []
        if nonfinite:
            notes.append(f"{nonfinite:,} NaN/Inf values drawn as 0 (see the histogram's counts)")
        self.message.setText("; ".join(notes))
        self.message.setVisible(bool(notes))

    def _clear(self, message: str) -> None:
        self.array = None
        self.factor = 1
        self.title = ""
        self.plot.setTitle(None)
        self.image.hide()
        self.message.setText(message)
        self.message.setVisible(True)
