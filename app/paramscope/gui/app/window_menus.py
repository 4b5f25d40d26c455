"""The main window's menu bar: File, Edit, View (with Theme) and Help.

Each menu is built by one function that puts its actions on the window under the names the
rest of the GUI and the tests use (``window.open_action``, ``window.undo_action``, ...). The
actions call the window's own methods; nothing here holds state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget

from paramscope.core.sources.demos import DEMOS
from paramscope.gui import theme
from paramscope.gui.app import window_exports
from paramscope.gui.app.about import show_about
from paramscope.gui.app.files_actions import FilesActions
from paramscope.gui.app.opening import clear_recent_files, gone, recent_files

if TYPE_CHECKING:  # pragma: no cover
    from paramscope.gui.app.main_window import MainWindow


def build_menus(window: MainWindow) -> None:
    build_file_menu(window)
    build_edit_menu(window)
    build_view_menu(window)
    window.help_menu = window.menuBar().addMenu("&Help")
    window.about_action = window.help_menu.addAction("&About paramscope")
    window.about_action.triggered.connect(lambda: show_about(window))


def build_file_menu(window: MainWindow) -> None:
    """Open, demos, recent files, the file tasks (export, load weights, diff), plots, Quit."""
    menu = window.file_menu = window.menuBar().addMenu("&File")
    window.open_action = menu.addAction("&Open file…")
    window.open_action.setShortcut(QKeySequence.StandardKey.Open)
    window.open_action.triggered.connect(window.open_file_dialog)
    window.open_folder_action = menu.addAction("Open f&older…")
    window.open_folder_action.setToolTip(
        "A save_pretrained folder, a Hugging Face cache snapshot, a torch.distributed.checkpoint folder"
    )
    window.open_folder_action.triggered.connect(window.open_folder_dialog)
    window.demo_menu = menu.addMenu("Open &demo")
    for name, demo in DEMOS.items():
        action = window.demo_menu.addAction(f"demo:{name}")
        action.setToolTip(demo.description)
        action.setStatusTip(demo.description)
        action.triggered.connect(lambda _checked=False, n=name: window.open_source(f"demo:{n}"))
    window.recent_menu = menu.addMenu("&Recent files")
    window.recent_menu.aboutToShow.connect(lambda: fill_recent_menu(window))
    window.open_series_action = menu.addAction("Open &series…")
    window.open_series_action.setToolTip("A run's checkpoints over time: a glob, a folder, or several files or URLs")
    window.open_series_action.triggered.connect(window.series_view.open_dialog)
    menu.addSeparator()
    window.files_actions = FilesActions(window.state, window, interactive=window.interactive)
    window.files_actions.install(menu)  # Export…, Load weights…, Diff against…
    for action in menu.actions():
        if action.text().replace("&", "").startswith("Export state_dict"):
            action.setShortcuts([QKeySequence(QKeySequence.StandardKey.Save), QKeySequence("Ctrl+E")])
            window.export_action = action
    menu.addSeparator()
    window.export_plot_action = menu.addAction("Export &plot as PNG/SVG…")
    window.export_plot_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
    window.export_plot_action.triggered.connect(lambda: window_exports.export_plot_dialog(window))
    window.export_bins_action = menu.addAction("Export histogram &bins as CSV…")
    window.export_bins_action.triggered.connect(lambda: window_exports.export_bins_dialog(window))
    menu.addSeparator()
    window.quit_action = menu.addAction("&Quit")
    # Some platforms (offscreen, Windows) bind no key to Quit: Ctrl+Q then, as most desktop apps.
    window.quit_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Quit) or [QKeySequence("Ctrl+Q")])
    window.quit_action.triggered.connect(window.close)


def fill_recent_menu(window: MainWindow) -> None:
    menu = window.recent_menu
    menu.clear()
    files = recent_files()
    for spec in files:
        action = menu.addAction(spec)
        action.triggered.connect(lambda _checked=False, s=spec: window.open_source(s))
        if gone(spec):  # deleted since: shown, greyed out
            action.setEnabled(False)
            action.setToolTip(f"{spec} no longer exists")
    if not files:
        menu.addAction("(none)").setEnabled(False)
    else:
        menu.addSeparator()
        menu.addAction("Clear list").triggered.connect(clear_recent_files)


def build_edit_menu(window: MainWindow) -> None:
    """Undo / Redo (named after the command), copying the table, Find."""
    menu = window.edit_menu = window.menuBar().addMenu("&Edit")
    window.undo_action = QAction("&Undo", window)
    window.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
    window.undo_action.triggered.connect(window.undo)
    window.redo_action = QAction("&Redo", window)
    # Ctrl+Y as well as the platform's Redo (Ctrl+Shift+Z on Linux), as the README says.
    redo_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
    window.redo_action.setShortcuts(redo_keys + [k for k in [QKeySequence("Ctrl+Y")] if k not in redo_keys])
    window.redo_action.triggered.connect(window.redo)
    menu.addAction(window.undo_action)
    menu.addAction(window.redo_action)
    menu.addSeparator()
    menu.addAction(window.param_panel.copy_action)
    menu.addAction("Copy table as &CSV").triggered.connect(lambda: window.param_panel.copy_table(","))
    menu.addAction("Copy table as &TSV").triggered.connect(lambda: window.param_panel.copy_table("\t"))
    menu.addSeparator()
    window.find_action = menu.addAction("&Find parameter…")
    window.find_action.setShortcut(QKeySequence.StandardKey.Find)
    window.find_action.triggered.connect(window.focus_filter)
    window.find_module_action = menu.addAction("Find &module…")
    window.find_module_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
    window.find_module_action.triggered.connect(window.focus_module_filter)


def build_view_menu(window: MainWindow) -> None:
    """Every dock (placed later ones add themselves), log y, the module tree, theme, layout."""
    menu = window.view_menu = window.menuBar().addMenu("&View")
    for dock in window.findChildren(QDockWidget):
        menu.addAction(dock.toggleViewAction())
    menu.addSeparator()
    log_action = menu.addAction("Histogram: log y")
    log_action.setCheckable(True)
    log_y = window.histogram_panel.view.log_y
    log_action.toggled.connect(log_y.setChecked)
    log_y.toggled.connect(log_action.setChecked)
    menu.addAction("Expand module tree").triggered.connect(window.tree_panel.view.expandAll)
    menu.addAction("Collapse module tree").triggered.connect(lambda: window.tree_panel.view.expandToDepth(0))
    menu.addSeparator()
    build_theme_menu(window)
    menu.addAction("Reset layout").triggered.connect(window.reset_layout)


def build_theme_menu(window: MainWindow) -> None:
    """View > Theme: system, light or dark, for widgets and plots alike (remembered)."""
    menu = window.view_menu.addMenu("&Theme")
    group = QActionGroup(window)
    group.setExclusive(True)
    window.theme_actions = {}
    active = theme.current_theme()
    for name, text in theme.THEMES.items():
        action = menu.addAction(text)
        action.setCheckable(True)
        action.setChecked(name == active)
        action.triggered.connect(lambda _checked=False, n=name: theme.choose_theme(n))
        group.addAction(action)
        window.theme_actions[name] = action
