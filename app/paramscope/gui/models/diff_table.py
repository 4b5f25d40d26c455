"""A diff's rows as a Qt table model: one row per tensor, sorted in Python.

A ``QTableWidget`` made five items per row on the GUI thread: a diff of two checkpoints of
100,000 tensors held the window for 5 s before it showed. The model keeps the rows as tuples
and answers only for the cells a view paints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt

from paramscope.core.sources.diff import DiffResult
from paramscope.gui.multidata import OneCallPerCell
from paramscope.gui.number_text import number_text

COLUMNS = ("name", "status", "max |Δ|", "rel. change", "cosine")
#: name, status, then max |Δ|, relative change and cosine (None where they do not apply)
Row = tuple[str, str, float | None, float | None, float | None]
AnyIndex = QModelIndex | QPersistentModelIndex
NUMBER_ALIGNMENT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def diff_rows(result: DiffResult, a: str = "A", b: str = "B") -> list[Row]:
    """Changed and identical tensors, then those only in ``a`` or ``b``, then mismatches."""
    rows: list[Row] = []
    for t in result.tensors:
        name = t.name + (f"  (= {', '.join(t.aliases[1:])})" if len(t.aliases) > 1 else "")
        status = "changed" if not t.identical else "identical" if t.dtype_a == t.dtype_b else f"same values, {t.dtype_a} → {t.dtype_b}"
        rows.append((name, status, t.max_abs, t.rel_change, t.cosine))
    for names, side in ((result.only_a, a), (result.only_b, b)):
        tied = result.tied_only
        rows += [(n, f"only in {side}" + (f", tied there to {tied[n]}" if n in tied else ""), None, None, None) for n in names]
    rows += [(m.name, "mismatch: " + m.describe().split(": ", 1)[1], None, None, None) for m in result.mismatched]
    return rows


def _number_key(value: float | None) -> float:
    """Numbers sort by value; a missing one or NaN below every number."""
    return -math.inf if value is None or math.isnan(value) else value


class DiffTableModel(OneCallPerCell, QAbstractTableModel):
    """Read-only rows of a diff; :meth:`sort` orders numbers by value, text by text."""

    def __init__(self, rows: Sequence[Row] = (), parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows = list(rows)

    def set_rows(self, rows: Sequence[Row]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802 (Qt's signature)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        value = self._rows[index.row()][index.column()]
        numeric = index.column() >= 2
        if role == Qt.ItemDataRole.DisplayRole:
            return number_text(value) if numeric else value  # type: ignore[arg-type]
        if role == Qt.ItemDataRole.TextAlignmentRole and numeric:
            return NUMBER_ALIGNMENT
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(COLUMNS):
            return COLUMNS[section]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(COLUMNS):
            return
        if column >= 2:
            key: Any = lambda row: _number_key(row[column])  # noqa: E731
        else:
            key = lambda row: row[column]  # noqa: E731
        self.beginResetModel()
        self._rows.sort(key=key, reverse=order == Qt.SortOrder.DescendingOrder)
        self.endResetModel()
