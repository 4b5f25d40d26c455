"""The Series table: one row per tensor (or module) and checkpoint, the columns of ``series --json``.

Long form (name, step, then the numbers) so that sorting a column finds the largest jump or the
first NaN of the whole run at once, and the filter box narrows it to one layer. A point missing
from a checkpoint keeps its row, marked absent, so every layer has a row at every step.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from paramscope.core.runs.series import Series, SeriesPoint, SeriesRow
from paramscope.gui import colors

AnyIndex = QModelIndex | QPersistentModelIndex

SORT_ROLE = Qt.ItemDataRole.UserRole  # numbers sort as numbers
VALUE_ROLE = Qt.ItemDataRole.UserRole + 1  # the number itself (None where there is none)
CELL_ROLE = Qt.ItemDataRole.UserRole + 2  # (row in the series' list, step index)

# header, key of SeriesPoint.to_dict() (None: a column of the row, not of the point), tooltip
COLUMNS: tuple[tuple[str, str | None, str], ...] = (
    ("Name", None, "Tensor (or module: its own tensors pooled) as the checkpoints name it"),
    ("Step", None, "Training step parsed from the checkpoint's name (#n: the n-th file, in the order given)"),
    ("norm", "norm", "L2 norm of the finite values, in float64"),
    ("std", "std", "Standard deviation of the finite values (n − 1), in float64"),
    ("max |w|", "max_abs", "Largest finite magnitude"),
    ("NaN", "nan", "Number of NaN elements"),
    ("Inf", "inf", "Number of +Inf and −Inf elements"),
    ("Δ prev", "rel_prev", "‖Wₜ − Wₜ₋₁‖ / ‖Wₜ₋₁‖: relative change from the previous checkpoint"),
    ("Δ first", "rel_first", "‖Wₜ − W₀‖ / ‖W₀‖: relative change from the first checkpoint"),
    ("Shape", None, "Shape at the first checkpoint that holds it"),
    ("dtype", None, "Element type at the first checkpoint that holds it"),
)
_AT = {title: i for i, (title, _, _) in enumerate(COLUMNS)}
COL_NAME, COL_STEP, COL_NAN, COL_INF = _AT["Name"], _AT["Step"], _AT["NaN"], _AT["Inf"]
COL_SHAPE, COL_DTYPE = _AT["Shape"], _AT["dtype"]  # the same at every step: last
TEXT_COLUMNS = frozenset({COL_NAME, COL_STEP, COL_SHAPE, COL_DTYPE})
ABSENT_SORT = -math.inf  # absent points and missing values sort below every number


def step_labels(series: Series) -> list[str]:
    """``step 200`` where the names have steps, else ``#3`` (the third file, in the order given)."""
    return [f"step {s}" if s is not None else f"#{i + 1}" for i, s in enumerate(series.steps)]


def _number(value: float | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.6g}"


def _sort_key(value: float | int | None) -> float:
    """Missing values sort lowest; an undefined change (NaN) sorts highest, beside +Inf: both are
    what an audit looks for when it sorts a change column from the top."""
    if value is None:
        return ABSENT_SORT
    if isinstance(value, float) and math.isnan(value):
        return math.inf
    return float(value)


class SeriesTableModel(QAbstractTableModel):
    """Rows of a series (tensors or modules) x its checkpoints, one table row per pair."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list[SeriesRow] = []
        self.steps: list[str] = []

    def set_rows(self, rows: list[SeriesRow], steps: list[str]) -> None:
        self.beginResetModel()
        self.rows, self.steps = rows, steps
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.rows) * len(self.steps)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def cell(self, table_row: int) -> tuple[int, int]:
        """(row in ``rows``, step index) of a table row."""
        return divmod(table_row, len(self.steps))

    def table_row(self, row: int, step: int) -> int:
        return row * len(self.steps) + step

    def value(self, table_row: int, column: int) -> Any:
        """What a cell holds, unformatted: a name, step label, shape text, number or None."""
        r, s = self.cell(table_row)
        row = self.rows[r]
        if column == COL_NAME:
            return row.name
        if column == COL_STEP:
            return self.steps[s].removeprefix("step ")
        if column == COL_SHAPE:
            return "" if row.shape is None else "[" + ", ".join(map(str, row.shape)) + "]"
        if column == COL_DTYPE:
            return row.dtype or ""
        point = row.points[s]
        return None if point is None else point.to_dict()[COLUMNS[column][1]]  # type: ignore[index]

    def point(self, table_row: int) -> SeriesPoint | None:
        r, s = self.cell(table_row)
        return self.rows[r].points[s]

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        table_row, column = index.row(), index.column()
        if role == CELL_ROLE:
            return self.cell(table_row)
        value = self.value(table_row, column)
        if role == VALUE_ROLE:
            return value
        if role == SORT_ROLE:
            if column == COL_STEP:
                return self.cell(table_row)[1]
            return value if column in TEXT_COLUMNS else _sort_key(value)
        if column in TEXT_COLUMNS:
            return self._text_cell(table_row, column, value, role)
        return self._number_cell(table_row, column, value, role)

    def _text_cell(self, table_row: int, column: int, value: Any, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return value
        if role == Qt.ItemDataRole.ToolTipRole and column == COL_NAME:
            absent = self.point(table_row) is None
            return f"{value} ({self.steps[self.cell(table_row)[1]]}){': absent from this checkpoint' if absent else ''}"
        if role == Qt.ItemDataRole.ForegroundRole and self.point(table_row) is None:
            return colors.MUTED_TEXT
        return None

    def _number_cell(self, table_row: int, column: int, value: Any, role: int) -> Any:
        alarming = (column in (COL_NAN, COL_INF) and bool(value)) or (isinstance(value, float) and math.isnan(value))
        if role == Qt.ItemDataRole.DisplayRole:
            return _number(value)
        if role == Qt.ItemDataRole.ToolTipRole:
            return repr(value) if value is not None else "absent (or no previous checkpoint to compare with)"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and alarming:
            return colors.NONFINITE_BACKGROUND
        if role == Qt.ItemDataRole.ForegroundRole:
            if alarming:
                return colors.NONFINITE_TEXT
            if value is None:
                return colors.MUTED_TEXT
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section][2]
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable if index.isValid() else Qt.ItemFlag.NoItemFlags

    def as_rows(self) -> list[list[str]]:
        """Every row as text, full precision (CSV export)."""
        out = []
        for r in range(self.rowCount()):
            cells = [self.value(r, c) for c in range(len(COLUMNS))]
            out.append(["" if v is None else v if isinstance(v, str) else repr(v) for v in cells])
        return out


class SeriesFilterProxy(QSortFilterProxyModel):
    """Sorts numbers as numbers; the filter box matches the name (any case)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterKeyColumn(COL_NAME)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
