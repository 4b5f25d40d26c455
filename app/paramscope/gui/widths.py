"""Column widths from a sample of rows: ResizeToContents reads every row, too slow for 10,000."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt
from PySide6.QtWidgets import QHeaderView

SAMPLE_ROWS = 50


def fit_columns(
    header: QHeaderView,
    model: QAbstractItemModel,
    *,
    minimum: int = 40,
    maximum: int = 320,
    extra: int = 24,
    stretch_last: bool = False,
    caps: dict[int, int] | None = None,
) -> None:
    """Set each column's width from its header and the first rows' text, within bounds.

    ``caps`` gives some columns a smaller maximum (long class names are elided; tooltips have them).
    """
    metrics = header.fontMetrics()
    rows = min(model.rowCount(), SAMPLE_ROWS)
    for column in range(model.columnCount()):
        if header.isSectionHidden(column):
            continue
        title = str(model.headerData(column, Qt.Orientation.Horizontal) or "")
        width = metrics.horizontalAdvance(title) + extra
        for row in range(rows):
            text = model.index(row, column).data()
            if text:
                width = max(width, metrics.horizontalAdvance(str(text)) + extra)
        cap = (caps or {}).get(column, maximum)
        header.resizeSection(column, max(minimum, min(cap, width)))
    header.setStretchLastSection(stretch_last)
