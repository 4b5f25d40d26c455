"""The parameter table panel: filter box, sortable table, copy to clipboard, selection.

The user picks the columns (right-click on the header; remembered in QSettings); Name is always
shown and frozen on the left while the other columns scroll sideways.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QPoint, QSettings, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QLineEdit, QMenu, QVBoxLayout, QWidget

from paramscope.gui.models.param_table import (
    COL_GRAD_NORM,
    COL_MAX,
    COL_MEAN,
    COL_MIN,
    COL_NAME,
    COL_NORM,
    COL_QUALIFIED,
    COL_STD,
    COLUMNS,
    NAME_ROLE,
    ParameterFilterProxy,
    ParameterTableModel,
)
from paramscope.gui.models.ties import tied_tensors
from paramscope.gui.panels.frozen_table import FrozenColumnTableView
from paramscope.gui.plots.plot_export import rows_as_text
from paramscope.gui.state import AppState
from paramscope.gui.widths import fit_columns

NUMBER_COLUMNS = (COL_MEAN, COL_STD, COL_MIN, COL_MAX, COL_NORM, COL_GRAD_NORM)
HIDDEN_COLUMNS_KEY = "parameters/hidden_columns"  # column titles, so a reordering never hides the wrong one


def hidden_columns() -> set[int]:
    """The columns the user turned off (never Name), as saved in QSettings."""
    saved = QSettings().value(HIDDEN_COLUMNS_KEY, [])
    titles = [saved] if isinstance(saved, str) else list(saved or [])
    return {COLUMNS.index(t) for t in titles if t in COLUMNS and t != COLUMNS[COL_NAME]}


def save_hidden_columns(columns: set[int]) -> None:
    QSettings().setValue(HIDDEN_COLUMNS_KEY, [COLUMNS[c] for c in sorted(columns) if c != COL_NAME])


class ParameterPanel(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = ParameterTableModel(self)
        self.proxy = ParameterFilterProxy(self)
        self.proxy.setSourceModel(self.model)

        self.filter_box = QLineEdit(self)
        self.filter_box.setObjectName("filterBox")
        self.filter_box.setPlaceholderText("Filter parameters (name, alias, dtype, shape)…")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.textChanged.connect(self.proxy.set_filter_text)

        self.view = FrozenColumnTableView(self)
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # model order until the user sorts
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.verticalHeader().setDefaultSectionSize(self.view.fontMetrics().height() + 6)
        self.view.verticalHeader().setSectionResizeMode(self.view.verticalHeader().ResizeMode.Fixed)
        self.view.verticalHeader().hide()
        self.view.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.selectionModel().selectionChanged.connect(self._on_selection)
        self._hidden = hidden_columns()
        header = self.view.horizontalHeader()
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._show_column_menu)
        self.view.frozen.horizontalHeader().setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.frozen.horizontalHeader().customContextMenuRequested.connect(self._show_column_menu)
        header.setToolTip("Right-click to choose the columns")
        self._apply_hidden()

        copy = QAction("Copy rows", self.view)
        copy.setShortcut(QKeySequence.StandardKey.Copy)
        copy.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        copy.triggered.connect(self.copy_selection)
        self.view.addAction(copy)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.copy_action = copy

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.filter_box)
        layout.addWidget(self.view)

        state.sessionChanged.connect(self._on_session)
        state.moduleSelected.connect(self._on_module)
        state.tensorSelected.connect(self._on_tensor)
        state.summariesChanged.connect(self.model.summaries_changed)
        state.tensorsChanged.connect(self.model.tensors_changed)
        state.gradNormsChanged.connect(self.model.grad_norms_changed)
        state.tiedGroupSelected.connect(self._on_group)
        if state.has_session:
            self._on_session()

    # --- state -> view -------------------------------------------------------------------------
    def _on_session(self) -> None:
        self._show_module(self.state.selected_module)
        self._on_group(self.state.selected_group)

    def _on_module(self, name: str) -> None:
        self._show_module(name)

    def _show_module(self, name: str) -> None:
        session = self.state.session if self.state.has_session else None
        self.model.set_module(session, name)
        self.model.set_highlight(
            tied_tensors(session.report, self.state.selected_group) if session else frozenset()
        )
        self._apply_hidden(name)
        header = self.view.horizontalHeader()
        fit_columns(header, self.model, maximum=280)
        # Statistics arrive after the widths are set: leave room for the widest number format.
        number_width = self.view.fontMetrics().horizontalAdvance("-8.888e-88") + 16
        for column in NUMBER_COLUMNS:
            header.resizeSection(column, max(header.sectionSize(column), number_width))
        icon_room = self.view.iconSize().width() if self.view.iconSize().isValid() else 16
        header.resizeSection(COL_NAME, min(300, header.sectionSize(COL_NAME) + icon_room + 6))
        if self.state.selected_tensor:
            self._on_tensor(self.state.selected_tensor)

    # --- columns ---------------------------------------------------------------------------------
    def _apply_hidden(self, module: str | None = None) -> None:
        root = (self.model.module_name if module is None else module) == ""
        for column in range(len(COLUMNS)):
            # Qualified name is the same as Name at the root: hidden there whatever the choice.
            hide = column in self._hidden or (column == COL_QUALIFIED and root)
            self.view.setColumnHidden(column, hide and column != COL_NAME)

    def column_menu(self) -> QMenu:
        """A checkable entry per column; Name is always shown (checked, disabled)."""
        menu = QMenu(self)
        for column, title in enumerate(COLUMNS):
            action = menu.addAction(title)
            action.setCheckable(True)
            action.setChecked(column not in self._hidden)
            action.setEnabled(column != COL_NAME)
            action.toggled.connect(lambda on, c=column: self.set_column_shown(c, on))
        menu.addSeparator()
        menu.addAction("Show all columns").triggered.connect(self.show_all_columns)
        return menu

    def _show_column_menu(self, pos: QPoint) -> None:
        header = self.sender()
        menu = self.column_menu()
        menu.exec(header.mapToGlobal(pos) if header is not None else self.mapToGlobal(pos))
        menu.deleteLater()

    def set_column_shown(self, column: int, shown: bool) -> None:
        """Show or hide ``column`` (Name cannot be hidden) and remember it for the next run."""
        if column == COL_NAME:
            return
        if shown:
            self._hidden.discard(column)
        else:
            self._hidden.add(column)
        save_hidden_columns(self._hidden)
        self._apply_hidden()

    def show_all_columns(self) -> None:
        self._hidden.clear()
        save_hidden_columns(self._hidden)
        self._apply_hidden()

    def _on_group(self, index: int) -> None:
        if self.state.has_session:
            self.model.set_highlight(tied_tensors(self.state.session.report, index))

    def _on_tensor(self, canonical: str) -> None:
        row = self.model.row_of(canonical)
        if row < 0:
            return
        proxy_index = self.proxy.mapFromSource(self.model.index(row, 0))
        if not proxy_index.isValid():
            return
        selection = self.view.selectionModel()
        if self.selected_names() == [canonical]:
            return
        selection.select(
            proxy_index,
            QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
        )
        self.view.scrollTo(proxy_index)

    # --- view -> state -------------------------------------------------------------------------
    def _on_selection(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        names = self.selected_names()
        if len(names) == 1 and self.state.has_session:
            self.state.select_tensor(names[0])

    def selected_rows(self) -> list[int]:
        """Source rows selected, in view order."""
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in rows]

    def selected_names(self) -> list[str]:
        return [self.model.index(r, COL_NAME).data(NAME_ROLE) for r in self.selected_rows()]

    def selected_tsv(self) -> str:
        """Selected rows (all shown rows if none) as tab-separated text with a header line."""
        return self.table_text("\t")

    def table_text(self, separator: str = "\t", *, all_rows: bool = False) -> str:
        """The selected rows (or every shown row) as TSV (``"\\t"``) or CSV (``","``) with a header."""
        rows = [] if all_rows else self.selected_rows()
        if not rows:
            rows = [self.proxy.mapToSource(self.proxy.index(r, 0)).row() for r in range(self.proxy.rowCount())]
        header = self.view.horizontalHeader()
        columns = [c for c in range(len(COLUMNS)) if not header.isSectionHidden(c)]
        texts = [self.model.row_texts(row) for row in rows]
        return rows_as_text([COLUMNS[c] for c in columns], [[t[c] for c in columns] for t in texts], separator)

    def copy_selection(self) -> None:
        QGuiApplication.clipboard().setText(self.selected_tsv())

    def copy_table(self, separator: str = "\t") -> None:
        """Copy every shown row (CSV with ``","``, TSV with a tab) to the clipboard."""
        QGuiApplication.clipboard().setText(self.table_text(separator, all_rows=True))
