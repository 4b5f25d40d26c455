"""Parameters and buffers under the selected module, as a Qt table model, and its sort/filter proxy.

One row per distinct tensor, named as ``get_submodule(module).named_parameters()`` names it,
with every alias listed. Statistics come from the session's summary cache, gradient norms from
its gradient-norm cache (a backward's own results, or the statistics worker's); both fill in
(via ``dataChanged``) as they arrive. Reading a cell never reads a tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import EllipsisType
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap

from paramscope.core.edit.session import Session
from paramscope.core.model.dequantize import quantized_in
from paramscope.core.model.model_statistics import NO_NUMBER
from paramscope.core.model.report import TensorInfo
from paramscope.core.model.tensor_stats import TensorStats
from paramscope.gui import colors
from paramscope.gui.multidata import OneCallPerCell

AnyIndex = QModelIndex | QPersistentModelIndex

SORT_ROLE = Qt.ItemDataRole.UserRole  # numbers sort as numbers
NAME_ROLE = Qt.ItemDataRole.UserRole + 1  # canonical tensor name

# Statistics right after the shape: they are what a user scans; bookkeeping columns follow.
COLUMNS = (
    "Name", "Shape", "dtype", "numel", "mean", "std", "min", "max", "norm", "zeros", "NaN", "Inf",
    "grad norm", "requires_grad", "Device", "Kind", "Aliases", "Qualified name",
)  # fmt: skip
(
    COL_NAME, COL_SHAPE, COL_DTYPE, COL_NUMEL, COL_MEAN, COL_STD, COL_MIN, COL_MAX, COL_NORM,
    COL_ZEROS, COL_NAN, COL_INF, COL_GRAD_NORM, COL_GRAD, COL_DEVICE, COL_KIND, COL_ALIASES,
    COL_QUALIFIED,
) = range(len(COLUMNS))  # fmt: skip
STAT_COLUMNS = range(COL_MEAN, COL_INF + 1)
NUMERIC_COLUMNS = frozenset({COL_NUMEL, *STAT_COLUMNS, COL_GRAD_NORM})
_TOOLTIPS = {
    COL_NAME: "Name relative to the selected module, as module.named_parameters() gives it",
    COL_SHAPE: "tensor.shape",
    COL_DTYPE: "Element type (tensor.dtype)",
    COL_NUMEL: "Number of elements (tensor.numel())",
    COL_MEAN: "Mean over finite values (float64); NaN and Inf are counted separately",
    COL_STD: "Standard deviation over finite values (float64)",
    COL_MIN: "Smallest finite value",
    COL_MAX: "Largest finite value",
    COL_NORM: "L2 norm over finite values, as tensor.norm() in float64",
    COL_ZEROS: "Fraction of elements equal to zero",
    COL_NAN: "Number of NaN elements (never dropped silently)",
    COL_INF: "Number of +Inf and -Inf elements",
    COL_GRAD_NORM: "L2 norm of .grad; None before any backward",
    COL_GRAD: "requires_grad: False means frozen (no gradient, optimizers skip it)",
    COL_DEVICE: "Device the tensor lives on (meta: shape only, values not loaded)",
    COL_KIND: "parameter, or buffer (persistent or not)",
    COL_ALIASES: "Every name of a tied tensor (named_parameters(remove_duplicate=False))",
    COL_QUALIFIED: "Full name from the model root, as model.named_parameters() gives it",
}
MISSING = NO_NUMBER  # sort key of a value not known (yet)
_NO_ROWS = np.zeros(0, dtype=np.int64)
SPAN_ALL = 1000  # more tensors changed than this: the whole table is announced as changed
_STAT_ATTRIBUTES = {
    COL_MEAN: "mean", COL_STD: "std", COL_MIN: "min", COL_MAX: "max", COL_NORM: "norm",
    COL_ZEROS: "zero_fraction", COL_NAN: "nan", COL_INF: "inf",
}  # fmt: skip


def fmt_float(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    return f"{value:.4g}"


def _haystacks(infos: Iterable[TensorInfo]) -> Iterator[tuple[str, str]]:
    """(name, what the filter box searches: every name, the kind, dtype and shape, in lower case)."""
    shapes: dict[tuple[int, ...] | None, str] = {}  # few distinct shapes among many tensors
    for info in infos:
        shape = shapes.get(info.shape)
        if shape is None:
            shape = shapes[info.shape] = info.shape_text()
        yield info.name, " ".join((*info.aliases, info.kind, info.dtype, shape)).lower()


def _tie_icon() -> QIcon:
    """A small chain-link mark (drawn, so it needs no font glyph)."""
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(QColor(150, 95, 0), 2))
    painter.drawEllipse(1, 4, 7, 6)
    painter.drawEllipse(6, 4, 7, 6)
    painter.end()
    return QIcon(pixmap)


class ParameterTableModel(OneCallPerCell, QAbstractTableModel):
    """The rows of a module's tensors, filtered and sorted here, in one pass of Python each.

    A proxy's per-row ``filterAcceptsRow`` and ``lessThan`` are calls from C++ into Python: 0.6 s
    for each reset, keystroke or batch of statistics over 100,000 rows.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._session: Session | None = None
        self._module = ""
        # Rows are known by their tensor's position in ``report.order`` (made off the GUI thread):
        # filtering, sorting and finding a row are then array operations, not 100,000 lookups.
        self._model_order: list[tuple[str, TensorInfo]] = []  # the module's rows, as torch lists them
        self._model_positions = _NO_ROWS  # their positions
        self._rows: list[tuple[str, TensorInfo]] = []  # the rows shown, filtered and sorted
        self._positions = _NO_ROWS  # their positions
        self._row_at = _NO_ROWS  # the row shown of each position, -1 where none
        self._sort_column = -1
        self._sort_order = Qt.SortOrder.AscendingOrder
        self._filter = ""
        self._haystacks: dict[str, str] = {}  # what the filter searches, per tensor, made when first asked
        self._highlighted: frozenset[str] = frozenset()
        self._tie_icon: QIcon | None = None

    # --- content ---------------------------------------------------------------------------
    def set_module(self, session: Session | None, module: str = "") -> None:
        """Show the parameters, then the buffers, under ``module`` of ``session``'s model."""
        self.beginResetModel()
        if session is not self._session:
            self._haystacks = {}
        self._session = session
        self._module = module
        if session is None or module not in session.report.modules:
            self._model_order, self._model_positions = [], _NO_ROWS
        elif module == "":  # every tensor, under its own name: skip the per-alias search
            report = session.report
            self._model_order = [*report.parameters.items(), *report.buffers.items()]
            self._model_positions = np.arange(len(self._model_order))
        else:
            report = session.report
            self._model_order = list(report.parameters_under(module)) + list(report.buffers_under(module))
            order = report.order
            self._model_positions = np.fromiter((order[i.name] for _, i in self._model_order), np.int64, len(self._model_order))
        self._arrange()
        self.endResetModel()

    # --- filtering and sorting ---------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        """Show only the tensors whose names (any alias), kind, dtype or shape contain ``text``
        (any case); selections on rows still shown stay."""
        text = text.strip().lower()
        if text != self._filter:
            self._filter = text
            self._rearrange()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort rows by ``column`` (-1: model order). Keys are computed once per row (statistics
        read as arrays), so sorting 100,000 rows is not one call per comparison."""
        self._sort_column, self._sort_order = column, order
        self._rearrange()

    def _rearrange(self) -> None:
        """Filter and sort again as a layout change: persistent indexes (the selection) follow
        their rows; those of rows filtered out become invalid."""
        self.layoutAboutToBeChanged.emit()
        old_positions = self._positions
        self._arrange()
        persistent = self.persistentIndexList()
        rows = self._row_at[old_positions[[i.row() for i in persistent]]] if persistent else []
        self.changePersistentIndexList(
            persistent, [self.index(int(row), i.column()) if row >= 0 else QModelIndex() for i, row in zip(persistent, rows, strict=True)]
        )
        self.layoutChanged.emit()

    def _arrange(self) -> None:
        """The rows shown: the module's, filtered, then sorted."""
        rows, positions = self._model_order, self._model_positions
        if self._filter:
            text, haystacks = self._filter, self._haystacks
            haystacks.update(_haystacks(info for _, info in rows if info.name not in haystacks))
            kept = [i for i, (_, info) in enumerate(rows) if text in haystacks[info.name]]
            rows, positions = [rows[i] for i in kept], positions[kept]
        if 0 <= self._sort_column < len(COLUMNS):
            order = self._sort_permutation(rows, positions)
            rows, positions = [rows[i] for i in order.tolist()], positions[order]
        self._rows, self._positions = list(rows), positions
        count = len(self._session.report.order) if self._session is not None else 0
        self._row_at = np.full(count, -1, dtype=np.int64)
        self._row_at[positions] = np.arange(len(positions))

    def _sort_permutation(self, rows: list[tuple[str, TensorInfo]], positions: np.ndarray) -> np.ndarray:
        """The order of ``rows`` by the sort column; equal keys keep their order (either way)."""
        column, descending = self._sort_column, self._sort_order == Qt.SortOrder.DescendingOrder
        if column in STAT_COLUMNS and self._session is not None:
            keys = self._session.stat_column(_STAT_ATTRIBUTES[column])[positions]
            return np.argsort(-keys if descending else keys, kind="stable")
        keys = [self._sort_key(rel, info, column) for rel, info in rows]
        if not all(isinstance(k, int | float) for k in keys):
            keys = [str(k).lower() for k in keys]
        return np.array(sorted(range(len(rows)), key=keys.__getitem__, reverse=descending), dtype=np.int64)

    @property
    def module_name(self) -> str:
        return self._module

    def info(self, row: int) -> TensorInfo:
        return self._rows[row][1]

    def row_of(self, canonical: str) -> int:
        """The row showing tensor ``canonical``, or -1."""
        position = self._session.report.order.get(canonical) if self._session is not None else None
        return -1 if position is None else int(self._row_at[position])

    def summaries_changed(self, names: tuple[str, ...]) -> None:
        if self._sort_column in STAT_COLUMNS:  # new numbers move rows
            self.sort(self._sort_column, self._sort_order)
        self._emit_rows_changed(names, COL_MEAN, COL_INF)

    def tensors_changed(self, names: tuple[str, ...]) -> None:
        """Values changed: statistics are being recomputed, gradients may be gone."""
        self._emit_rows_changed(names, 0, len(COLUMNS) - 1)

    def grad_norms_changed(self, names: tuple[str, ...] = ()) -> None:
        """Gradient norms of ``names`` (empty: of all) are known or forgotten."""
        if self._sort_column == COL_GRAD_NORM:  # new numbers move rows
            self.sort(self._sort_column, self._sort_order)
        self._emit_rows_changed(names, COL_GRAD_NORM, COL_GRAD_NORM)

    def set_highlight(self, canonical_names: set[str] | frozenset[str]) -> None:
        changed = self._highlighted ^ frozenset(canonical_names)
        self._highlighted = frozenset(canonical_names)
        self._emit_rows_changed(tuple(changed), 0, len(COLUMNS) - 1)

    @property
    def highlighted(self) -> frozenset[str]:
        return self._highlighted

    def _emit_rows_changed(self, names: tuple[str, ...], first: int, last: int) -> None:
        if not self._rows:
            return
        if not names or len(names) > SPAN_ALL:  # "everything"; or so many that finding them costs more
            rows = [0, len(self._rows) - 1]
        else:
            rows = [row for row in map(self.row_of, names) if row >= 0]
        if rows:
            # One signal over the span: cheaper than one per row, and views repaint only what shows.
            self.dataChanged.emit(self.index(min(rows), first), self.index(max(rows), last))

    # --- Qt model ----------------------------------------------------------------------------
    def index(self, row: int, column: int, parent: AnyIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        # One call into Python per index, where Qt's own asks rowCount() and columnCount() (two):
        # a repaint makes hundreds, each waiting for the GIL while a worker computes.
        if parent.isValid() or not (0 <= row < len(self._rows) and 0 <= column < len(COLUMNS)):
            return QModelIndex()
        return self.createIndex(row, column)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section]
            if role == Qt.ItemDataRole.ToolTipRole:
                return _TOOLTIPS.get(section)
        if orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return str(section + 1) if 0 <= section < len(self._rows) else None
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        relative, info = self._rows[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(relative, info, column)
        if role == SORT_ROLE:
            return self._sort_key(relative, info, column)
        if role == NAME_ROLE:
            return info.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(info, column)
        if role == Qt.ItemDataRole.DecorationRole and column == COL_NAME and info.is_tied:
            if self._tie_icon is None:
                self._tie_icon = _tie_icon()
            return self._tie_icon
        if role == Qt.ItemDataRole.BackgroundRole:
            if info.name in self._highlighted:
                return colors.TIED_HIGHLIGHT
            if self._nonfinite(info):
                return colors.NONFINITE_BACKGROUND
        if role == Qt.ItemDataRole.ForegroundRole:
            if info.name in self._highlighted:
                return colors.HIGHLIGHT_TEXT
            if self._nonfinite(info):
                return colors.NONFINITE_TEXT
            if info.kind == "buffer":
                return colors.BUFFER_TEXT
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMERIC_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    # --- cell contents -------------------------------------------------------------------------
    def _stats(self, info: TensorInfo) -> TensorStats | None:
        if self._session is None:
            return None
        summary = self._session.summary(info.name)
        return None if summary is None else summary.stats

    def _nonfinite(self, info: TensorInfo) -> bool:
        stats = self._stats(info)
        return stats is not None and stats.nonfinite > 0

    def grad_norm(self, info: TensorInfo) -> float | None | EllipsisType:
        """The known norm of the parameter's ``.grad`` (None: no gradient; ``...``: being measured)."""
        if info.kind != "parameter" or self._session is None:
            return None
        return self._session.grad_norms.get(info.name, ...)

    def _stat_value(self, info: TensorInfo, column: int) -> float | int | None:
        stats = self._stats(info)
        if stats is None or not stats.has_data:
            return None
        return {
            COL_MEAN: stats.mean,
            COL_STD: stats.std,
            COL_MIN: stats.min,
            COL_MAX: stats.max,
            COL_NORM: stats.norm,
            COL_ZEROS: stats.zero_fraction,
            COL_NAN: stats.nan,
            COL_INF: stats.inf,
        }[column]

    def _text(self, relative: str, info: TensorInfo, column: int) -> str:
        if column == COL_NAME:
            return relative
        if column == COL_QUALIFIED:
            return info.name
        if column == COL_ALIASES:  # only tied tensors have other names worth a column
            return ", ".join(info.aliases) if info.is_tied else ""
        if column == COL_KIND:
            if info.kind == "buffer":
                return "buffer" if info.persistent else "buffer (non-persistent)"
            return "parameter"
        if column == COL_SHAPE:
            return info.shape_text()
        if column == COL_DTYPE:
            return info.dtype
        if column == COL_DEVICE:
            return info.device
        if column == COL_GRAD:
            return "yes" if info.requires_grad else "no"
        if column == COL_NUMEL:
            return f"{info.numel:,}"
        if column in STAT_COLUMNS:
            stats = self._stats(info)
            if stats is not None and not stats.has_data:
                return "no data" if column == COL_MEAN else ""
            value = self._stat_value(info, column)
            if value is None:
                return "…" if stats is None and info.note is None else ""
            if column == COL_ZEROS:
                return f"{100 * value:.3g}%"
            if column in (COL_NAN, COL_INF):
                return str(int(value))
            return fmt_float(float(value))
        if column == COL_GRAD_NORM:
            if info.kind != "parameter":
                return ""
            norm = self.grad_norm(info)
            return "None" if norm is None else "…" if norm is ... else fmt_float(norm)
        return ""

    def _sort_key(self, relative: str, info: TensorInfo, column: int) -> Any:
        if column in (COL_NUMEL, COL_SHAPE):
            return float(info.numel)
        if column == COL_GRAD:
            return int(info.requires_grad)
        if column in STAT_COLUMNS:
            value = self._stat_value(info, column)
            return MISSING if value is None else float(value)
        if column == COL_GRAD_NORM:
            norm = self.grad_norm(info)
            return MISSING if norm is None or norm is ... else norm
        return self._text(relative, info, column)

    def _tooltip(self, info: TensorInfo, column: int) -> str | None:
        lines = [f"{info.name}: {info.kind}, {info.shape_text()} {info.dtype} on {info.device}"]
        if info.is_tied:
            lines.append("tied: one tensor under the names " + ", ".join(info.aliases))
            lines.append("changing it through any name changes all of them")
        elif self._session is not None and (group := self._session.report.group_of(info.name)):
            lines.append(f"tied ({group.kind}): " + ", ".join(group.names))
        if info.note:
            lines.append(info.note)
        if self._session is not None and (quantized := quantized_in(info.name, self._session.report)):
            lines.append(f"stored quantized ({quantized.stored_as}), scaled by {quantized.scale}: these statistics "
                         "are of what is stored; Histogram > Show > Dequantized draws the weights")  # fmt: skip
        stats = self._stats(info)
        if stats is not None and stats.nonfinite:
            lines.append(f"{stats.nan} NaN, {stats.posinf} +Inf, {stats.neginf} -Inf")
        if stats is not None and stats.note:
            lines.append(stats.note)
        return "\n".join(lines)

    def row_texts(self, row: int) -> list[str]:
        relative, info = self._rows[row]
        return [self._text(relative, info, c) for c in range(len(COLUMNS))]


class ParameterFilterProxy(OneCallPerCell, QSortFilterProxyModel):
    """Hands filtering and sorting to its :class:`ParameterTableModel` (see there why).

    The proxy stays between the model and the views, which select and map through it.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self._text = ""

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        source = self.sourceModel()
        if isinstance(source, ParameterTableModel):
            source.sort(column, order)
        else:
            super().sort(column, order)

    def set_filter_text(self, text: str) -> None:
        """Show the tensors whose names (any alias), kind, dtype or shape contain ``text``."""
        self._text = text.strip().lower()
        source = self.sourceModel()
        if isinstance(source, ParameterTableModel):
            source.set_filter(self._text)
