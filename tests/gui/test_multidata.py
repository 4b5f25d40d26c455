"""Views read a cell's roles in one call into Python, and paint exactly what data() says."""

from __future__ import annotations

import sys

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from paramscope.core.edit.session import Session
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import OpenedModel
from paramscope.gui.models.param_table import ParameterFilterProxy, ParameterTableModel
from paramscope.gui.models.tree_model import ModuleFilterProxy, ModuleTreeModel
from paramscope.gui.multidata import OneCallPerCell

MIXIN_CODE = OneCallPerCell.multiData.__code__


def _from_mixin() -> bool:
    """The caller of the caller is OneCallPerCell.multiData (not Qt's per-role default)."""
    return sys._getframe(2).f_code is MIXIN_CODE


def _cells(model: QSortFilterProxyModel, parent: QModelIndex = QModelIndex()) -> list[QModelIndex]:  # noqa: B008
    cells = []
    for row in range(model.rowCount(parent)):
        cells.extend(model.index(row, column, parent) for column in range(model.columnCount(parent)))
        cells.extend(_cells(model, model.index(row, 0, parent)))
    return cells


def _check_painted_cells(proxy_class: type, source_class: type, fill: object) -> None:
    """Paint-ask every cell of ``source_class`` behind ``proxy_class``; ``fill(model)`` loads it."""
    calls: list[int] = []
    direct: list[bool] = []

    class CountingProxy(proxy_class):  # type: ignore[misc, valid-type]
        def multiData(self, index, span) -> None:  # type: ignore[no-untyped-def]  # noqa: N802
            calls.append(index.row())
            super().multiData(index, span)

    class Source(source_class):  # type: ignore[misc, valid-type]
        def data(self, index, role=Qt.ItemDataRole.DisplayRole):  # type: ignore[no-untyped-def]
            direct.append(_from_mixin())
            return super().data(index, role)

    model = Source()
    fill(model)  # type: ignore[operator]
    proxy = CountingProxy()
    proxy.setSourceModel(model)
    cells = _cells(proxy)
    assert len(cells) > 20
    shown = [index.data(Qt.ItemDataRole.DisplayRole) for index in cells]
    colors = [index.data(Qt.ItemDataRole.ForegroundRole) for index in cells]
    calls.clear()
    direct.clear()
    delegate = QStyledItemDelegate()
    for index, text, color in zip(cells, shown, colors, strict=True):
        option = QStyleOptionViewItem()
        delegate.initStyleOption(option, index)  # what a view asks before it paints a cell
        assert option.text == ("" if text is None else str(text))
        if color is not None:
            assert option.palette.text().color() == color
    assert len(calls) == len(cells)  # every role of a cell in one call into Python
    assert direct and all(direct)  # which reads the source's data() itself, role by role


def _session() -> Session:
    return Session(OpenedModel(build_demo("tiny_lm"), "demo:tiny_lm", "demo"))


def test_module_tree_cells_take_one_call_each() -> None:
    session = _session()
    _check_painted_cells(ModuleFilterProxy, ModuleTreeModel, lambda m: m.set_report(session.report))


def test_parameter_table_cells_take_one_call_each() -> None:
    session = _session()
    _check_painted_cells(ParameterFilterProxy, ParameterTableModel, lambda m: m.set_module(session, ""))


def test_painting_the_parameter_table_calls_into_python_a_few_times_per_cell(qtbot) -> None:
    """Each call from C++ into Python waits for the GIL while a worker computes (up to 5 ms): a
    repaint asking rowCount, columnCount and flags per cell stalled the window ~1 s during the
    statistics of 100,000 tensors. index() and multiData() remain: about two calls per cell."""
    from paramscope.gui.panels.param_panel import ParameterPanel
    from paramscope.gui.state import AppState

    panel = ParameterPanel(AppState(_session()))
    qtbot.addWidget(panel)
    panel.resize(900, 400)
    here = sys._getframe()
    entries: list[str] = []

    def count(frame, event, _arg):  # type: ignore[no-untyped-def]
        if event == "call" and frame.f_back is here:  # called by Qt during the paint below
            entries.append(frame.f_code.co_name)

    sys.setprofile(count)
    try:
        panel.view.viewport().grab()  # a paint of every visible cell
    finally:
        sys.setprofile(None)
    cells = entries.count("multiData")
    assert cells > 50
    assert len(entries) <= 2.5 * cells, sorted(set(entries))  # rowCount and columnCount per index: 3.2
