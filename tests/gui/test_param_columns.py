"""The parameter table's columns: chosen by the user (remembered), Name frozen on the left."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from paramscope.gui.app.main_window import MainWindow
from paramscope.gui.models.param_table import COL_DTYPE, COL_NAME, COL_NUMEL, COL_QUALIFIED, COLUMNS


def _open(qtbot, source: str = "demo:mlp") -> MainWindow:
    window = MainWindow(interactive=False)
    qtbot.addWidget(window)
    window.resize(900, 600)
    window.show()
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        assert window.open_source(source)
    return window


def _menu_action(window: MainWindow, title: str):
    menu = window.param_panel.column_menu()
    return next(a for a in menu.actions() if a.text() == title)


def test_columns_chosen_in_the_header_menu_are_remembered(settings_file, qtbot):
    first = _open(qtbot)
    view = first.param_panel.view
    assert not view.isColumnHidden(COL_DTYPE)
    name_action = _menu_action(first, "Name")
    assert name_action.isChecked() and not name_action.isEnabled()  # Name cannot be turned off
    _menu_action(first, "dtype").setChecked(False)  # the user unticks dtype
    assert view.isColumnHidden(COL_DTYPE)
    assert "dtype" not in first.param_panel.table_text().splitlines()[0].split("\t")
    first.close()

    second = _open(qtbot)
    assert second.param_panel.view.isColumnHidden(COL_DTYPE)  # remembered across runs
    assert not _menu_action(second, "dtype").isChecked()
    second.param_panel.view.setColumnHidden(COL_NAME, False)
    second.param_panel.set_column_shown(COL_NAME, False)  # ignored: Name stays
    assert not second.param_panel.view.isColumnHidden(COL_NAME)
    second.param_panel.show_all_columns()
    assert not second.param_panel.view.isColumnHidden(COL_DTYPE)
    assert QSettings().value("parameters/hidden_columns", []) in ([], None, "")


def test_a_saved_choice_never_hides_name(settings_file, qtbot):
    QSettings().setValue("parameters/hidden_columns", ["Name", "numel"])
    window = _open(qtbot)
    assert not window.param_panel.view.isColumnHidden(COL_NAME)
    assert window.param_panel.view.isColumnHidden(COL_NUMEL)


def test_qualified_name_hidden_at_the_root_shown_below(settings_file, qtbot):
    window = _open(qtbot)
    window.state.select_module("")
    assert window.param_panel.view.isColumnHidden(COL_QUALIFIED)
    window.state.select_module("0")
    assert not window.param_panel.view.isColumnHidden(COL_QUALIFIED)


def test_name_stays_on_the_left_when_the_table_scrolls_sideways(settings_file, qtbot):
    window = _open(qtbot)
    window.resize(700, 600)
    view = window.param_panel.view
    bar = view.horizontalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    bar.setValue(bar.maximum())  # scrolled to the last columns
    frozen = view.frozen
    assert frozen.isVisible()
    assert frozen.geometry().left() <= view.frameWidth() + 1
    assert frozen.columnWidth(COL_NAME) == view.columnWidth(COL_NAME) and frozen.width() == view.columnWidth(COL_NAME)
    assert [frozen.isColumnHidden(c) for c in range(len(COLUMNS))] == [c != COL_NAME for c in range(len(COLUMNS))]
    # The overlay shows the same rows, and selecting there selects in the table.
    frozen.selectRow(1)
    assert window.param_panel.selected_names() == [window.param_panel.model.info(1).name]
    assert window.state.selected_tensor == window.param_panel.model.info(1).name
    # Rows scroll together.
    view.verticalScrollBar().setValue(view.verticalScrollBar().maximum())
    assert frozen.verticalScrollBar().value() == view.verticalScrollBar().value()
