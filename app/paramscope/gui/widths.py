"""Column widths from a sample of rows: ResizeToContents reads every row, too slow for 10,000."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QHeaderView, QLabel, QSizePolicy, QWidget

SAMPLE_ROWS = 50
SPIN_WIDTH = 90
COMBO_CHARS = 8  # a combo box in a dock is this wide at least; its popup shows the full names


def narrow_combo(combo: QComboBox, chars: int = COMBO_CHARS) -> QComboBox:
    """Let ``combo`` be narrower than its longest item, so a dock never widens to fit it.

    The popup still shows full names; the current one is elided and repeated in the tooltip.
    """
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    combo.currentTextChanged.connect(combo.setToolTip)
    combo.setToolTip(combo.currentText())
    return combo


def shrinkable_spin(spin: QAbstractSpinBox, width: int = SPIN_WIDTH) -> QAbstractSpinBox:
    """Let a spin box be narrower than its widest possible value (±1e9 with 6 decimals asked
    for 174 px and set the Initialize dock's minimum width); typical values still fit.
    """
    spin.setMinimumWidth(min(width, spin.minimumSizeHint().width()))
    return spin


class _WheelGuard(QObject):
    """Passes the wheel over an unfocused combo or spin box on to the panel, which scrolls.

    Qt gives the wheel to the widget under the pointer: scrolling down a form silently changed
    the initializer from normal_ to uniform_. Ignoring the event sends it to the parent.
    """

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Wheel and isinstance(watched, QWidget) and not watched.hasFocus():
            event.ignore()
            return True
        return False


_GUARD = _WheelGuard()


def guard_wheel(root: QWidget) -> None:
    """Every combo and spin box under ``root`` (and ``root`` itself) changes by the wheel only
    when focused (a click focuses it); otherwise the wheel scrolls the panel around it.
    """
    widgets = [root] if isinstance(root, QComboBox | QAbstractSpinBox) else []
    widgets += root.findChildren(QComboBox) + root.findChildren(QAbstractSpinBox)
    for widget in widgets:
        widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the wheel alone never focuses it
        widget.removeEventFilter(_GUARD)
        widget.installEventFilter(_GUARD)


def wrapping(label: QLabel) -> QLabel:
    """A label that wraps instead of making its dock as wide as its longest line.

    Its width comes from the layout alone: a word too long to wrap (``a.weight,b.weight,...``,
    a path) is cut at the edge rather than widening the dock behind a scroll bar.
    """
    label.setWordWrap(True)
    label.setMinimumWidth(0)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, label.sizePolicy().verticalPolicy())
    return label


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
