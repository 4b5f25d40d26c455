"""The values of a tensor in a grid, as ``print(param)`` shows them.

1-D tensors are one row, 2-D tensors their matrix; higher dimensions are shown as rows over
the leading indices (``[i, j, :]``). A large tensor shows its first and last rows and columns
around ``…``, as ``print`` summarizes it; meta and lazy tensors say why there is nothing to show.
A tensor of a lazily opened checkpoint is read in a worker, and only while the tab is shown.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QLabel, QTableView, QVBoxLayout, QWidget

from paramscope.core.model.report import is_lazy
from paramscope.core.model.tensor_stats import data_problem
from paramscope.gui import colors
from paramscope.gui.multidata import OneCallPerCell
from paramscope.gui.plots.when_shown import RefreshWhenShown
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker

AnyIndex = QModelIndex | QPersistentModelIndex
MAX_ELEMENTS = 4096


EDGE = 3  # values shown at each end of a side of a large tensor, as print(param) shows them
GAP = "…"


class Grid(NamedTuple):
    """What the Values tab shows: a 2-D array (None: nothing), row and column labels, a note."""

    array: np.ndarray | None
    rows: list[str]
    note: str
    columns: list[str] | None = None  # None: 0, 1, 2, ...


def grid_of(tensor: torch.Tensor) -> Grid:
    """The grid for ``tensor``; never raises: a tensor that cannot be shown (a dtype NumPy lacks,
    more dimensions than it has) gets a note. Up to :data:`MAX_ELEMENTS` every value; a larger
    tensor its first and last :data:`EDGE` rows and columns around ``…``, as ``print`` does."""
    if is_lazy(tensor):
        return Grid(None, [], "no data: an uninitialized (lazy) parameter; run a forward pass to give it a shape")
    problem = data_problem(tensor)
    if problem is not None:
        return Grid(None, [], f"no data: {problem}")
    shape = tuple(tensor.shape)
    dims = ", ".join(map(str, shape))
    if tensor.numel() == 0:  # [0, 2**62] is empty too: no grid of 2**62 columns
        return Grid(None, [], f"shape [{dims}]: no values (it has no elements)")
    try:
        if tensor.numel() > MAX_ELEMENTS:
            return _corners(tensor.detach(), dims)
        array = _as_numpy(tensor.detach().to("cpu").reshape(-1, shape[-1] if shape else 1))
    except (TypeError, RuntimeError, ValueError) as exc:  # a dtype neither NumPy nor float() has
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Grid(None, [], f"no values shown: {str(tensor.dtype).removeprefix('torch.')} ({reason[:120]})")
    if len(shape) == 0:
        return Grid(array, ["[]"], "a scalar")
    if len(shape) == 1:
        return Grid(array, [""], f"shape [{shape[0]}]: one row")
    if len(shape) == 2:
        return Grid(array, [str(i) for i in range(shape[0])], f"shape [{dims}]")
    # itertools, not np.ndindex: NumPy stops at 64 dimensions, torch does not
    leading = itertools.product(*(range(n) for n in shape[:-1]))
    labels = ["[" + ", ".join(map(str, idx)) + ", :]" for idx in leading]
    return Grid(array, labels, f"shape [{dims}] shown as 2-D: {_rows_are(shape)}")


def _rows_are(shape: tuple[int, ...]) -> str:
    return "one row per [" + ", ".join("ijklmn"[d % 6] for d in range(len(shape) - 1)) + ", :]"


def _ends(count: int) -> list[int | None]:
    """Indices shown of a side of ``count``: all, or the first and last EDGE with None between."""
    if count <= 2 * EDGE + 1:
        return list(range(count))
    return [*range(EDGE), None, *range(count - EDGE, count)]


def _corners(tensor: torch.Tensor, dims: str) -> Grid:
    """A large tensor's first and last EDGE rows and columns (rows over its leading indices),
    read one row at a time: a [151936, 896] embedding is not copied."""
    shape = tuple(tensor.shape)
    leading = shape[:-1]
    rows = _ends(math.prod(leading))
    columns = _ends(shape[-1])
    wanted = [c for c in columns if c is not None]
    grid = np.full((len(rows), len(columns)), GAP, dtype=object)
    labels = []
    for r, row in enumerate(rows):
        if row is None:
            labels.append(GAP)
            continue
        index = tuple(int(i) for i in np.unravel_index(row, leading)) if leading else ()
        line = tensor[index]  # a view; its ends as slices (float8 has no indexing by a list)
        parts = [line] if len(wanted) == shape[-1] else [line[:EDGE], line[shape[-1] - EDGE :]]
        values = np.concatenate([_as_numpy(part.to("cpu").reshape(1, -1))[0] for part in parts])
        for c, value in zip((c for c, col in enumerate(columns) if col is not None), values, strict=True):
            grid[r, c] = value
        labels.append("" if not leading else str(index[0]) if len(leading) == 1 else "[" + ", ".join(map(str, index)) + ", :]")
    how = f"the first and last {EDGE} of each side, as print(param) shows them"
    layout = f"; {_rows_are(shape)}" if len(shape) > 2 else ""
    return Grid(grid, labels, f"shape [{dims}], {math.prod(shape):,} elements: {how}{layout}", [GAP if c is None else str(c) for c in columns])


def _as_numpy(values: torch.Tensor) -> np.ndarray:
    """A 2-D array NumPy can hold: floats it lacks (half, bfloat16, float8) as float32, complex32
    as complex64."""
    if values.is_complex() and values.dtype != torch.complex128:
        values = values.to(torch.complex64)
    elif values.is_floating_point() and values.dtype not in (torch.float32, torch.float64):
        values = values.float()
    return values.resolve_conj().resolve_neg().numpy()


def _fmt(value: Any) -> str:
    if isinstance(value, str):  # the gap of a large tensor's grid
        return value
    if isinstance(value, np.bool_ | bool):
        return "True" if value else "False"
    if isinstance(value, np.integer):
        return str(int(value))
    if isinstance(value, np.complexfloating):
        return f"{value.real:.4g}{value.imag:+.4g}j"
    return f"{float(value):.4g}"


class ValueGridModel(OneCallPerCell, QAbstractTableModel):
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._array: np.ndarray | None = None
        self._rows: list[str] = []
        self._columns: list[str] | None = None

    def set_array(self, array: np.ndarray | None, row_labels: list[str], column_labels: list[str] | None = None) -> None:
        self.beginResetModel()
        self._array = array
        self._rows = row_labels
        self._columns = column_labels
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() or self._array is None else self._array.shape[0]

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() or self._array is None else self._array.shape[1]

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self._array is None:
            return None
        value = self._array[index.row(), index.column()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            if role == Qt.ItemDataRole.DisplayRole or isinstance(value, str):
                return _fmt(value)
            return repr(value.item())
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if isinstance(value, str):  # the gap
                return int(Qt.AlignmentFlag.AlignCenter)
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        floating = isinstance(value, np.floating)  # (a large tensor's grid is of objects: values and gaps)
        if role == Qt.ItemDataRole.ForegroundRole and floating and not np.isfinite(value):
            return colors.NONFINITE_TEXT
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole or self._array is None:
            return None
        if orientation == Qt.Orientation.Horizontal:
            if not 0 <= section < self._array.shape[1]:
                return None
            return self._columns[section] if self._columns is not None else str(section)
        return self._rows[section] if 0 <= section < len(self._rows) else None


class ValueGrid(RefreshWhenShown, QWidget):
    """Shows the selected tensor's values; refreshes when they change."""

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = ValueGridModel(self)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        self.view.horizontalHeader().setDefaultSectionSize(self.fontMetrics().horizontalAdvance("-0.00000e+00") + 8)
        self.view.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.view, 1)
        state.sessionChanged.connect(self.refresh)
        state.tensorSelected.connect(lambda _n: self.refresh())
        state.tensorsChanged.connect(self._on_changed)
        self.worker = TaskWorker(self)  # reads a lazily opened tensor (from disk or the network)
        self.worker.finished.connect(self._read)
        self.worker.failed.connect(self.refresh_failed)
        self.refresh()

    def _on_changed(self, names: tuple[str, ...]) -> None:
        if self.state.selected_tensor in names:
            self.refresh()

    def refresh(self) -> None:
        self._dirty = False
        self.worker.cancel()
        name = self.state.selected_tensor if self.state.has_session else None
        if name is None:
            self.model.set_array(None, [])
            self.note.setText("Select a parameter to see its values.")
            return
        session = self.state.session
        if session.unread_bytes([name]):  # still in the file: read off the GUI thread, when shown
            self.model.set_array(None, [])
            if not self.isVisible():
                self._dirty = True  # (showEvent refreshes)
                self.note.setText(f"{name}: still in the file; read when this tab is shown")
                return
            self.note.setText(f"{name}: reading its values…")
            self.worker.start(lambda _state: (name, grid_of(session.values(name))), f"values of {name}")
            return
        try:
            grid = grid_of(session.tensor(name))
        except Exception as exc:  # a tab showing values must never take the window down
            grid = Grid(None, [], f"no values shown ({type(exc).__name__}: {exc})")
        self._show(name, grid)

    def _read(self, result: tuple[str, Grid]) -> None:
        name, grid = result
        if name == self.state.selected_tensor:
            self._show(name, grid)

    def _show(self, name: str, grid: Grid) -> None:
        self.model.set_array(grid.array, grid.rows, grid.columns)
        self.note.setText(f"{name}: {' '.join(grid.note.split())}")

    def refresh_failed(self, message: str) -> None:
        self.model.set_array(None, [])
        self.note.setText(f"{self.state.selected_tensor or 'values'}: no values shown ({message})")
