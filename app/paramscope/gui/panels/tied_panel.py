"""Tied groups: names that reach one tensor. Selecting one highlights every alias everywhere."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from paramscope.gui import colors
from paramscope.gui.state import AppState

GROUP_ROLE = Qt.ItemDataRole.UserRole


class TiedGroupsPanel(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.list = QTreeWidget(self)
        self.list.setHeaderLabels(["Names", "Kind"])
        self.list.setRootIsDecorated(False)
        self.list.setUniformRowHeights(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.itemSelectionChanged.connect(self._on_selection)
        self.empty = QLabel("No tied parameters: every name reaches its own tensor.", self)
        self.empty.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty)
        layout.addWidget(self.list)
        state.sessionChanged.connect(self.refresh)
        state.tiedGroupSelected.connect(self._show_selected)
        self.refresh()

    def refresh(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        groups = self.state.session.report.tied_groups if self.state.has_session else []
        for i, group in enumerate(groups):
            item = QTreeWidgetItem([" = ".join(group.names), group.kind])
            item.setData(0, GROUP_ROLE, i)
            item.setToolTip(0, group.describe() + "\nchanging one of these names changes all of them")
            self.list.addTopLevelItem(item)
        self.list.resizeColumnToContents(0)
        self.list.blockSignals(False)
        self.empty.setVisible(not groups)
        self.list.setVisible(bool(groups))
        self._show_selected(self.state.selected_group)

    def item(self, group_index: int) -> QTreeWidgetItem | None:
        return self.list.topLevelItem(group_index) if group_index >= 0 else None

    def _on_selection(self) -> None:
        if not self.state.has_session:
            return
        items = self.list.selectedItems()
        self.state.select_tied_group(items[0].data(0, GROUP_ROLE) if items else -1)

    def _show_selected(self, index: int) -> None:
        self.list.blockSignals(True)
        for i in range(self.list.topLevelItemCount()):
            item = self.list.topLevelItem(i)
            chosen = i == index
            item.setSelected(chosen)
            for column in range(2):
                item.setBackground(column, colors.TIED_HIGHLIGHT if chosen else Qt.GlobalColor.transparent)
        self.list.blockSignals(False)
