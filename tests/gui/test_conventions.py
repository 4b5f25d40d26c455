"""Desktop conventions: shortcuts, context menus, tooltips, status bar, About box, light/dark plots."""

from __future__ import annotations

import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QKeySequence, QPalette
from PySide6.QtWidgets import QMessageBox

from paramscope.gui import palette
from paramscope.gui.app.about import versions
from paramscope.gui.app.context_menus import find_action
from paramscope.gui.models.param_table import COLUMNS
from paramscope.gui.panels.diagnostics_panel import DIAGNOSTIC_ROLE
from paramscope.gui.panels.init_panel import SELECTED_MODULE, SELECTED_TENSOR


def table_index(window, name: str):
    panel = window.param_panel
    return panel.proxy.mapFromSource(panel.model.index(panel.model.row_of(name), 0))


def tree_index(window, module: str):
    panel = window.tree_panel
    return panel.proxy.mapFromSource(panel.model.index_of(module))


def test_standard_shortcuts_are_bound(window):
    keys = {
        window.open_action: QKeySequence.StandardKey.Open,
        window.export_action: QKeySequence.StandardKey.Save,
        window.undo_action: QKeySequence.StandardKey.Undo,
        window.redo_action: QKeySequence.StandardKey.Redo,
        window.find_action: QKeySequence.StandardKey.Find,
        window.quit_action: QKeySequence.StandardKey.Quit,
    }
    for action, key in keys.items():
        bindings = QKeySequence.keyBindings(key)
        if bindings:
            assert bindings[0] in action.shortcuts(), action.text()
        else:  # the platform has no standard key for it: the app still binds one
            assert action.shortcuts() and not action.shortcuts()[0].isEmpty(), action.text()


def test_find_shortcut_focuses_the_filter_box(open_demo, qtbot):
    window = open_demo("mlp")
    window.activateWindow()
    window.param_panel.view.setFocus()
    qtbot.keySequence(window, QKeySequence(QKeySequence.StandardKey.Find))
    qtbot.waitUntil(lambda: window.param_panel.filter_box.hasFocus())


def test_undo_redo_shortcuts_undo_an_edit(open_demo, qtbot):
    window = open_demo("mlp")
    weight = window.state.session.tensor("0.weight")
    before = weight.detach().clone()
    from paramscope.core.edit.commands import TensorEditCommand

    window.state.execute(TensorEditCommand("zero 0.weight", [("0.weight", weight)], weight.data.zero_))
    window.activateWindow()
    qtbot.keySequence(window, QKeySequence(QKeySequence.StandardKey.Undo))
    qtbot.waitUntil(lambda: torch.equal(weight.detach(), before))
    qtbot.keySequence(window, QKeySequence(QKeySequence.StandardKey.Redo))
    qtbot.waitUntil(lambda: bool(weight.detach().eq(0).all()))


def test_table_menu_initialize_targets_the_tensor(open_demo):
    window = open_demo("mlp")
    window.state.select_module("")
    menu = window.row_menus.table_menu(table_index(window, "2.weight"))
    find_action(menu, "Initialize").trigger()
    assert window.state.selected_tensor == "2.weight"
    assert window.init_panel.target_mode.currentData() == SELECTED_TENSOR
    assert window.init_panel.target_names() == ["2.weight"]
    assert window.init_dock.isVisible()


def test_table_menu_copies_name_and_values_as_print_shows_them(open_demo):
    window = open_demo("mlp")
    window.state.select_module("")
    menu = window.row_menus.table_menu(table_index(window, "0.bias"))
    find_action(menu, "Copy name").trigger()
    assert QGuiApplication.clipboard().text() == "0.bias"
    menu = window.row_menus.table_menu(table_index(window, "0.bias"))
    find_action(menu, "Copy values").trigger()
    assert QGuiApplication.clipboard().text() == str(window.state.session.model[0].bias)
    assert QGuiApplication.clipboard().text().startswith("Parameter containing:")


def test_show_in_tied_group_selects_the_group(open_demo):
    window = open_demo("shared")
    window.state.select_module("")
    menu = window.row_menus.table_menu(table_index(window, "0.weight"))
    find_action(menu, "Show in tied group").trigger()
    assert window.state.selected_group == 0
    assert window.tied_panel.list.topLevelItem(0).isSelected()
    tree_menu = window.row_menus.tree_menu(tree_index(window, "1"))
    assert find_action(tree_menu, "Show in tied group").isEnabled()


def test_tree_menu_initialize_targets_the_module_and_copies(open_demo):
    window = open_demo("mlp")
    menu = window.row_menus.tree_menu(tree_index(window, "2"))
    find_action(menu, "Initialize").trigger()
    assert window.state.selected_module == "2"
    assert window.init_panel.target_mode.currentData() == SELECTED_MODULE
    assert sorted(window.init_panel.target_names()) == ["2.bias", "2.weight"]
    assert not find_action(window.row_menus.tree_menu(tree_index(window, "2")), "Show in tied group").isEnabled()
    find_action(window.row_menus.tree_menu(tree_index(window, "2")), "Copy module").trigger()
    assert QGuiApplication.clipboard().text() == "Linear(in_features=3, out_features=1, bias=True)"


def test_context_menu_opens_on_right_click(open_demo, qtbot):
    window = open_demo("mlp")
    view = window.param_panel.view
    shown = []
    original = window.row_menus.table_menu

    def spy(index):
        menu = original(index)
        shown.append(menu)
        return menu

    window.row_menus.table_menu = spy
    rect = view.visualRect(view.model().index(0, 0))
    view.customContextMenuRequested.emit(rect.center())
    assert len(shown) == 1 and shown[0].isVisible()
    shown[0].close()


def test_every_column_and_diagnostic_has_a_tooltip(open_demo):
    window = open_demo("unregistered")
    model = window.param_panel.model
    for column in range(len(COLUMNS)):
        assert model.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole), COLUMNS[column]
    tree = window.tree_panel.model
    for column in range(tree.columnCount()):
        assert tree.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    items = window.diagnostics_panel.list
    assert items.topLevelItemCount() > 0
    for i in range(items.topLevelItemCount()):
        item = items.topLevelItem(i)
        diagnostic = item.data(0, DIAGNOSTIC_ROLE)
        tip = item.toolTip(0)
        assert tip and tip != diagnostic.message  # explains the kind, not only repeats the text
    unregistered = next(items.topLevelItem(i) for i in range(items.topLevelItemCount())
                        if items.topLevelItem(i).data(0, DIAGNOSTIC_ROLE).kind == "unregistered")  # fmt: skip
    assert "Parameter" in unregistered.toolTip(0)


def test_status_bar_says_what_is_selected_and_running(open_demo, qtbot):
    window = open_demo("mlp")
    window.state.select_tensor("0.weight")
    assert "0.weight" in window.selection_label.text()
    window.state.busyChanged.emit(True, "backward")
    assert "backward" in window.running_label.text()
    window.state.busyChanged.emit(False, "backward")
    assert window.running_label.text() == ""


def test_about_box_lists_versions(window):
    info = versions()
    assert info["torch"] == torch.__version__ and info["pyqtgraph"] == pg.__version__
    assert {"paramscope", "Qt", "PySide6", "Python"} <= set(info)
    window.about_action.trigger()
    box = next(w for w in window.findChildren(QMessageBox) if w.isVisible())
    assert torch.__version__ in box.text() and pg.__version__ in box.text()
    box.close()


def test_plots_follow_dark_and_light(window, qapp):
    from paramscope.gui import theme

    palette.follow_system(qapp)
    try:
        theme.apply_theme(qapp, "dark")
        background = window.histogram_panel.view.plot_widget.backgroundBrush().color()
        assert background.lightness() < 80
        assert background == qapp.palette().color(QPalette.ColorRole.Base)
        assert window.theme_actions["dark"] is not None
        theme.apply_theme(qapp, "light")
        assert window.histogram_panel.view.plot_widget.backgroundBrush().color().lightness() > 200
    finally:
        theme.apply_theme(qapp, "system")
    assert window.histogram_panel.view.plot_widget.backgroundBrush().color() == qapp.palette().color(
        QPalette.ColorRole.Base
    )


def test_layout_is_usable_at_1280x800(open_demo, qtbot):
    window = open_demo("mlp")
    window.resize(1280, 800)
    window.fit_docks()
    for dock in (window.init_dock, window.backward_dock):
        window.raise_dock(dock)
        qtbot.waitUntil(lambda d=dock: d.isVisible() and d.widget().width() > 300)
    plot = window.backward_panel.signal_plot
    assert plot.height() >= plot.minimumHeight() >= 200  # scrolls rather than squashing
    assert window.tabs.height() > 250 and window.param_panel.height() > 150
    assert window.tree_panel.width() > 250


def test_readme_screenshots_exist_and_stay_small():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    shots = sorted((root / "resources" / "screenshots").glob("*.png"))
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert shots, "run python -m paramscope.gui.app.screenshots"
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size < 300_000, shot.name
        assert f"resources/screenshots/{shot.name}" in readme, shot.name
    assert sum(s.stat().st_size for s in shots) < 2_000_000
