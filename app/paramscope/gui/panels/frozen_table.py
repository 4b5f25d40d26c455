"""A table view whose first column (Name) stays on the left while the rest scroll sideways.

Qt's own recipe (the "Frozen Column" example): a second view, laid over the main one, shows only
column 0 and shares its model, selection and vertical scrolling. With 18 columns a user scrolling
to ``requires_grad`` otherwise loses which row is which.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QItemSelectionModel, Qt
from PySide6.QtWidgets import QAbstractItemView, QFrame, QHeaderView, QTableView, QWidget

FROZEN = 0  # the column that never scrolls away


class FrozenColumnTableView(QTableView):
    """A QTableView with column 0 frozen on the left (an overlay view that shares everything)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frozen = QTableView(self)
        self.frozen.setObjectName("frozenColumn")
        self.frozen.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.frozen.verticalHeader().hide()
        self.frozen.setFrameShape(QFrame.Shape.NoFrame)
        self.frozen.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.frozen.horizontalHeader().setHighlightSections(False)
        self.frozen.setStyleSheet("QTableView#frozenColumn { border-right: 1px solid palette(mid); }")
        self.viewport().stackUnder(self.frozen)
        self.horizontalHeader().sectionResized.connect(self._on_section_resized)
        self.horizontalHeader().sortIndicatorChanged.connect(self._mirror_sort_indicator)
        self.frozen.horizontalHeader().sectionClicked.connect(self._sort_from_frozen)
        self.frozen.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(self.frozen.verticalScrollBar().setValue)

    # --- sharing with the overlay ----------------------------------------------------------------
    def setModel(self, model: QAbstractItemModel | None) -> None:  # noqa: N802
        super().setModel(model)
        self.frozen.setModel(model)
        self.frozen.setSelectionModel(self.selectionModel())
        self._hide_scrolling_columns()
        if model is not None:
            model.columnsInserted.connect(self._hide_scrolling_columns)
            model.modelReset.connect(self._hide_scrolling_columns)
        self._update_geometry()

    def setSelectionModel(self, selection: QItemSelectionModel) -> None:  # noqa: N802
        super().setSelectionModel(selection)
        if hasattr(self, "frozen") and self.frozen.model() is selection.model():
            self.frozen.setSelectionModel(selection)

    def _hide_scrolling_columns(self) -> None:
        model = self.model()
        for column in range(model.columnCount() if model is not None else 0):
            self.frozen.setColumnHidden(column, column != FROZEN)
        self.frozen.setColumnWidth(FROZEN, self.columnWidth(FROZEN))

    def _sync_settings(self) -> None:
        """Row height, selection and sorting look the same in both views."""
        self.frozen.verticalHeader().setDefaultSectionSize(self.verticalHeader().defaultSectionSize())
        self.frozen.verticalHeader().setSectionResizeMode(self.verticalHeader().sectionResizeMode(0))
        self.frozen.setSelectionBehavior(self.selectionBehavior())
        self.frozen.setSelectionMode(self.selectionMode())
        self.frozen.setAlternatingRowColors(self.alternatingRowColors())
        self.frozen.setWordWrap(self.wordWrap())
        self.frozen.setVerticalScrollMode(self.verticalScrollMode())
        self.frozen.setTextElideMode(self.textElideMode())
        self.frozen.setContextMenuPolicy(self.contextMenuPolicy())
        for action in self.actions():
            if action not in self.frozen.actions():
                self.frozen.addAction(action)
        self.frozen.horizontalHeader().setSortIndicatorShown(self.isSortingEnabled())

    def _on_section_resized(self, column: int, _old: int, new: int) -> None:
        if column == FROZEN:
            self.frozen.setColumnWidth(FROZEN, new)
            self._update_geometry()

    def _mirror_sort_indicator(self, column: int, order: Qt.SortOrder) -> None:
        self.frozen.horizontalHeader().setSortIndicator(column if column == FROZEN else -1, order)

    def _sort_from_frozen(self, column: int) -> None:
        """A click on the frozen Name header sorts as a click on the main one would."""
        if column != FROZEN or not self.isSortingEnabled():
            return
        header = self.horizontalHeader()
        ascending = Qt.SortOrder.AscendingOrder
        descending = Qt.SortOrder.DescendingOrder
        order = descending if header.sortIndicatorSection() == FROZEN and header.sortIndicatorOrder() == ascending else ascending
        self.sortByColumn(FROZEN, order)

    # --- geometry -------------------------------------------------------------------------------
    def _update_geometry(self) -> None:
        self._sync_settings()
        hidden = self.isColumnHidden(FROZEN)
        self.frozen.setVisible(not hidden and self.model() is not None)
        width = self.columnWidth(FROZEN)
        self.frozen.setGeometry(
            self.verticalHeader().width() + self.frameWidth(),
            self.frameWidth(),
            width,
            self.viewport().height() + self.horizontalHeader().height(),
        )
        self.frozen.horizontalHeader().setFixedHeight(self.horizontalHeader().height())

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._update_geometry()

    def updateGeometries(self) -> None:  # noqa: N802
        super().updateGeometries()
        if hasattr(self, "frozen"):
            self._update_geometry()

    def moveCursor(self, action: QAbstractItemView.CursorAction, modifiers: Qt.KeyboardModifier):  # noqa: N802
        """Keyboard moves to the left never leave a cell hidden under the frozen column."""
        current = super().moveCursor(action, modifiers)
        frozen_width = self.columnWidth(FROZEN)
        if (
            action == QAbstractItemView.CursorAction.MoveLeft
            and current.column() > FROZEN
            and self.visualRect(current).topLeft().x() < frozen_width
        ):
            new_value = self.horizontalScrollBar().value() + self.visualRect(current).topLeft().x() - frozen_width
            self.horizontalScrollBar().setValue(new_value)
        return current

    def scrollTo(self, index, hint: QAbstractItemView.ScrollHint = QAbstractItemView.ScrollHint.EnsureVisible) -> None:  # noqa: N802
        """Rows scroll into view; the Name column (always in view) never scrolls the table sideways."""
        if index.column() > FROZEN:
            super().scrollTo(index, hint)
            return
        keep = self.horizontalScrollBar().value()
        super().scrollTo(index, hint)
        self.horizontalScrollBar().setValue(keep)
