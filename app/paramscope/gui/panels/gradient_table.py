"""The Backward panel's gradient table: one row per parameter, then one per use of a tied one.

A Qt table model over a :class:`~paramscope.core.backward.backward.BackwardResult`'s summaries (computed
in the backward's worker): the per-use parts of a tied parameter are rows under it (the
tutorial's 6 = 3 + 3). Reading a cell reads numbers already computed, never a tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, overload

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)

from paramscope.core.backward.grad_results import GradPart, ParameterGradient
from paramscope.gui import colors
from paramscope.gui.models.param_table import fmt_float
from paramscope.gui.multidata import OneCallPerCell

AnyIndex = QModelIndex | QPersistentModelIndex
COLUMNS = [
    "Parameter",
    "Shape",
    "grad norm",
    "mean",
    "max |g|",
    "grad/weight",
    "zero frac",
    "NaN/Inf",
]


@dataclass(frozen=True)
class GradientRow:
    name: str  # canonical parameter name
    gradient: ParameterGradient | None  # None: no backward yet (or zero grad) in this panel
    part: GradPart | None = None  # a per-use part row under its parameter
    has_grad: bool = False  # for rows without a result: .grad is not None


class PlainRows(Sequence[GradientRow]):
    """The rows before any run, one per parameter, each made when read: a view reads the rows it
    paints, so a model of 100,000 parameters costs nothing here until the panel is looked at."""

    def __init__(self, names: Sequence[str], has_grad: Callable[[str], bool]) -> None:
        self._names = names
        self._has_grad = has_grad  # asked when a row is read (a pass over a million .grad: 0.3 s)

    def __len__(self) -> int:
        return len(self._names)

    @overload
    def __getitem__(self, index: int) -> GradientRow: ...
    @overload
    def __getitem__(self, index: slice) -> list[GradientRow]: ...
    def __getitem__(self, index: int | slice) -> GradientRow | list[GradientRow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        name = self._names[index]
        return GradientRow(name, None, has_grad=self._has_grad(name))


class GradientTableModel(OneCallPerCell, QAbstractTableModel):
    """One row per parameter, then one row per use of a tied parameter."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: Sequence[GradientRow] = []

    def set_rows(self, rows: Sequence[GradientRow]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(index.row(), index.column())
        if role == Qt.ItemDataRole.ForegroundRole:
            if row.part is not None:
                return colors.MUTED_TEXT
            g = row.gradient
            if g is not None and g.grad is not None and g.grad.nonfinite:
                return colors.NONFINITE_TEXT
        if role == Qt.ItemDataRole.ToolTipRole and row.gradient is not None and row.part is None:
            g = row.gradient
            if len(g.aliases) > 1:
                return "also named " + ", ".join(g.aliases[1:])
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def text(self, row_index: int, column: int) -> str:
        row = self.rows[row_index]
        g = row.gradient
        if row.part is not None:
            stats = row.part.stats
            if column == 0:
                return f"    ↳ use in {row.part.module}"
            values = {2: stats.norm, 3: stats.mean,
                      4: None if stats.min is None or stats.max is None else max(abs(stats.min), abs(stats.max)),
                      6: stats.zero_fraction}  # fmt: skip
            if column in values:
                return fmt_float(values[column])
            if column == 7:
                return f"{stats.nan}/{stats.inf}"
            return ""
        if column == 0:
            return row.name
        if g is None:
            if column == 2:
                return "(not from this panel)" if row.has_grad else "None"
            return ""
        if column == 1:
            return "uninit" if g.shape is None else "[" + ", ".join(map(str, g.shape)) + "]"
        if g.grad is None:
            return ("frozen" if not g.requires_grad else "None") if column == 2 else ""
        s = g.grad
        if column == 7:
            return f"{s.nan}/{s.inf}"
        values = {2: s.norm, 3: s.mean, 4: g.max_abs, 5: g.ratio, 6: s.zero_fraction}
        return fmt_float(values.get(column))
