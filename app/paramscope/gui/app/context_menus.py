"""Right-click menus on module-tree and parameter-table rows.

Tree row: Initialize… (the module's parameters), Copy name, Copy module (as ``print(module)``),
Show in tied group. Table row: Initialize…, Copy name, Copy values (as ``print(param)``), Show in
tied group, Copy table as CSV / TSV. The menus are built per click by :meth:`RowMenus.tree_menu`
and :meth:`RowMenus.table_menu` (tests trigger their actions directly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, QObject, QPoint, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMenu

from paramscope.core.state.init_state import SELECTED_MODULE, SELECTED_TENSOR
from paramscope.gui.models import tree_model
from paramscope.gui.models.param_table import COL_NAME, NAME_ROLE

if TYPE_CHECKING:
    from paramscope.gui.app.main_window import MainWindow


def find_action(menu: QMenu, text: str):
    """The action of ``menu`` whose text (without ``&``) starts with ``text``."""
    for action in menu.actions():
        if action.text().replace("&", "").startswith(text):
            return action
    raise KeyError(text)


# A lazily opened tensor up to this size is read for Copy values on the GUI thread (~1 ms from disk).
COPY_READ_BYTES = 1 << 20

class RowMenus(QObject):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.state = window.state
        for view, handler in (
            (window.tree_panel.view, self._tree_requested),
            (window.param_panel.view, self._table_requested),
        ):
            view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            view.customContextMenuRequested.connect(handler)

    # --- tree ----------------------------------------------------------------------------------
    def _tree_requested(self, pos: QPoint) -> None:
        view = self.window.tree_panel.view
        index = view.indexAt(pos)
        if index.isValid():
            self.tree_menu(index).popup(view.viewport().mapToGlobal(pos))

    def tree_menu(self, index: QModelIndex) -> QMenu:
        """The menu for the module at ``index`` (of the tree's proxy model)."""
        module = index.siblingAtColumn(tree_model.COL_NAME).data(tree_model.NAME_ROLE)
        menu = QMenu(self.window)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        label = module or "(model)"
        init = menu.addAction(f"&Initialize {label}…")
        init.setToolTip("Open the Initialize panel with this module's parameters as targets")
        init.triggered.connect(lambda: self.initialize_module(module))
        menu.addSeparator()
        menu.addAction("Copy &name").triggered.connect(lambda: self._copy(module))
        menu.addAction("Copy &module (as print shows it)").triggered.connect(lambda: self._copy(self.module_text(module)))
        group = self.group_of_module(module)
        show = menu.addAction("Show in &tied group")
        show.setEnabled(group >= 0)
        show.triggered.connect(lambda: self.show_group(group))
        return menu

    # --- table ---------------------------------------------------------------------------------
    def _table_requested(self, pos: QPoint) -> None:
        view = self.window.param_panel.view
        index = view.indexAt(pos)
        if index.isValid():
            self.table_menu(index).popup(view.viewport().mapToGlobal(pos))

    def table_menu(self, index: QModelIndex) -> QMenu:
        """The menu for the tensor row at ``index`` (of the table's proxy model)."""
        name = index.siblingAtColumn(COL_NAME).data(NAME_ROLE)
        panel = self.window.param_panel
        menu = QMenu(self.window)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        init = menu.addAction(f"&Initialize {name}…")
        init.setToolTip("Open the Initialize panel with this tensor as its target")
        init.triggered.connect(lambda: self.initialize_tensor(name))
        menu.addSeparator()
        menu.addAction("Copy &name").triggered.connect(lambda: self._copy(name))
        menu.addAction("Copy &values (as print(param) shows them)").triggered.connect(
            lambda: self._copy(self.values_text(name))
        )
        menu.addAction(panel.copy_action)
        group = self.group_of_tensor(name)
        show = menu.addAction("Show in &tied group")
        show.setEnabled(group >= 0)
        show.triggered.connect(lambda: self.show_group(group))
        menu.addSeparator()
        menu.addAction("Copy table as &CSV").triggered.connect(lambda: panel.copy_table(","))
        menu.addAction("Copy table as &TSV").triggered.connect(lambda: panel.copy_table("\t"))
        return menu

    # --- actions -------------------------------------------------------------------------------
    def initialize_tensor(self, name: str) -> None:
        report = self.state.session.report
        self.state.select_module(report.tensor(name).module)
        self.state.select_tensor(name)
        self._show_init(SELECTED_TENSOR)

    def initialize_module(self, module: str) -> None:
        self.state.select_module(module)
        self._show_init(SELECTED_MODULE)

    def _show_init(self, mode: str) -> None:
        panel = self.window.init_panel
        panel.init_state.target_mode = mode  # the widgets follow the state
        panel.refresh_targets()
        self.window.raise_dock(self.window.init_dock)

    def show_group(self, group: int) -> None:
        if group >= 0:
            self.state.select_tied_group(group)
            self.window.raise_dock(self.window.tied_dock)

    def values_text(self, name: str) -> str:
        """What ``print(param)`` shows. A lazily opened tensor is read first when small (here, on
        the GUI thread: at most :data:`COPY_READ_BYTES`), else the text says where to see it."""
        session = self.state.session
        unread = session.unread_bytes([name])
        if unread > COPY_READ_BYTES:
            info = session.report.tensor(name)
            return f"{name}: {info.shape_text()} {info.dtype}, still in the file: the Values tab reads it"
        return str(session.values(name) if unread else session.tensor(name))

    def module_text(self, module: str) -> str:
        model = self.state.session.model
        return str(model.get_submodule(module) if module else model)

    def group_of_tensor(self, name: str) -> int:
        report = self.state.session.report
        group = report.group_of(name)
        return report.tied_groups.index(group) if group is not None else -1

    def group_of_module(self, module: str) -> int:
        for i, group in enumerate(self.state.session.report.tied_groups):
            if any(n.rpartition(".")[0] == module for n in group.names):
                return i
        return -1

    @staticmethod
    def _copy(text: str) -> None:
        QGuiApplication.clipboard().setText(text)
