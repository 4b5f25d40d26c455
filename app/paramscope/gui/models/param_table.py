"""Parameters and buffers under the selected module, as a Qt table model, and its sort/filter proxy.

One row per distinct tensor, named as ``get_submodule(module).named_parameters()`` names it,
with every alias listed. Statistics come from the session's summary cache, gradient norms from
its gradient-norm cache (a backward's own results, or the statistics worker's); both fill in
(via ``dataChanged``) as they arrive. Reading a cell never reads a tensor.
"""

from __future__ import annotations

import math
from types import EllipsisType
from typing import Any

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
from paramscope.core.model.report import TensorInfo
from paramscope.core.model.tensor_stats import TensorStats
from paramscope.gui import colors
from paramscope.gui.models.tree_model import refilter
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
MISSING = -math.inf  # sort key of a value not known (yet)


def fmt_float(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0:
        return "0"
    return f"{value:.4g}"


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
    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._session: Session | None = None
        self._module = ""
        self._rows: list[tuple[str, TensorInfo]] = []
        self._model_order: list[tuple[str, TensorInfo]] = []
        self._row_of: dict[str, int] = {}
        self._sort_column = -1
        self._sort_order = Qt.SortOrder.AscendingOrder
        self._highlighted: frozenset[str] = frozenset()
        self._tie_icon: QIcon | None = None

    # --- content ---------------------------------------------------------------------------
    def set_module(self, session: Session | None, module: str = "") -> None:
        """Show the parameters, then the buffers, under ``module`` of ``session``'s model."""
        self.beginResetModel()
        self._session = session
        self._module = module
        if session is None or module not in session.report.modules:
            self._rows = []
        elif module == "":  # every tensor, under its own name: skip the per-alias search
            report = session.report
            self._rows = [(n, i) for n, i in report.parameters.items()] + [(n, i) for n, i in report.buffers.items()]
        else:
            report = session.report
            self._rows = list(report.parameters_under(module)) + list(report.buffers_under(module))
        self._model_order = list(self._rows)
        self._apply_sort()
        self._index_rows()
        self.endResetModel()

    def _index_rows(self) -> None:
        self._row_of = {info.name: row for row, (_, info) in enumerate(self._rows)}

    # --- sorting -----------------------------------------------------------------------------
    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort rows by ``column`` (-1: model order). Keys are computed once per row, so sorting
        10,000 rows is one pass of Python, not one call per comparison."""
        self._sort_column, self._sort_order = column, order
        self.layoutAboutToBeChanged.emit()
        old_rows = [info.name for _, info in self._rows]
        self._apply_sort()
        self._index_rows()
        persistent = self.persistentIndexList()
        self.changePersistentIndexList(
            persistent,
            [self.index(self._row_of[old_rows[i.row()]], i.column()) for i in persistent],
        )
        self.layoutChanged.emit()

    def _apply_sort(self) -> None:
        rows = list(self._model_order)
        column = self._sort_column
        if 0 <= column < len(COLUMNS):
            keys = [self._sort_key(rel, info, column) for rel, info in rows]
            numeric = all(isinstance(k, int | float) for k in keys)
            if not numeric:
                keys = [str(k).lower() for k in keys]
            order = sorted(range(len(rows)), key=keys.__getitem__, reverse=self._sort_order == Qt.SortOrder.DescendingOrder)
            rows = [rows[i] for i in order]
        self._rows = rows

    @property
    def module_name(self) -> str:
        return self._module

    def info(self, row: int) -> TensorInfo:
        return self._rows[row][1]

    def row_of(self, canonical: str) -> int:
        return self._row_of.get(canonical, -1)

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
        rows = sorted(self._row_of[n] for n in names if n in self._row_of)
        if not names and self._rows:  # "everything"
            rows = [0, len(self._rows) - 1]
        if rows:
            # One signal over the span: cheaper than one per row, and views repaint only what shows.
            self.dataChanged.emit(self.index(rows[0], first), self.index(rows[-1], last))

    # --- Qt model ----------------------------------------------------------------------------
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

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

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
    """A filter on relative, qualified and alias names; sorting is done by the source model.

    The proxy's own sort would call ``data()`` from Python twice per comparison (seconds for
    10,000 rows); :meth:`ParameterTableModel.sort` computes each key once.
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
        text = text.strip().lower()
        if text != self._text:
            refilter(self, lambda: setattr(self, "_text", text))

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        if not self._text:
            return True
        source = self.sourceModel()
        if isinstance(source, ParameterTableModel):
            info = source.info(source_row)
            haystack = " ".join((*info.aliases, info.kind, info.dtype, info.shape_text()))
            return self._text in haystack.lower()
        return True
