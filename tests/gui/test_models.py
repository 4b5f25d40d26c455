"""The Qt item models over the report: structure, laziness, sorting, filtering, highlights."""

from __future__ import annotations

import torch
from PySide6.QtCore import QModelIndex, Qt
from torch import nn

from paramscope.core.edit.session import Session
from paramscope.core.model.report import build_report
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import OpenedModel
from paramscope.gui import colors
from paramscope.gui.models.param_table import (
    COL_ALIASES,
    COL_MEAN,
    COL_NAME,
    COL_SHAPE,
    NAME_ROLE,
    ParameterFilterProxy,
    ParameterTableModel,
)
from paramscope.gui.models.tree_model import FETCH_BATCH, ModuleFilterProxy, ModuleTreeModel


def session_of(model: nn.Module) -> Session:
    return Session(OpenedModel(model, "test", "test"))


def children_names(model, parent: QModelIndex) -> list[str]:
    return [model.index(r, 0, parent).data() for r in range(model.rowCount(parent))]


def test_tree_model_passes_qt_model_tester(qtmodeltester):
    model = ModuleTreeModel(build_report(build_demo("tiny_lm")))
    qtmodeltester.check(model)


def test_filter_proxy_passes_model_tester_and_keeps_ancestors(qtmodeltester):
    model = ModuleTreeModel(build_report(build_demo("tiny_lm")))
    proxy = ModuleFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filter_text("linear2")
    qtmodeltester.check(proxy)
    root = proxy.index(0, 0)
    assert children_names(proxy, root) == ["blocks"]  # embed, norm, head are filtered out
    layers = proxy.index(0, 0, proxy.index(0, 0, root))
    layer0 = proxy.index(0, 0, layers)
    assert children_names(proxy, layer0) == ["linear2"]
    proxy.set_filter_text("")
    assert children_names(proxy, proxy.index(0, 0)) == ["embed", "blocks", "norm", "head"]


def test_tree_shows_sequential_children_and_counts():
    model = ModuleTreeModel(build_report(build_demo("mlp")))
    root = model.index(0, 0)
    assert model.rowCount() == 1
    assert model.index(0, 2).data() == "Sequential"
    assert children_names(model, root) == ["0", "1", "2"]
    assert model.index(0, 1).data() == "19"  # 4*3+3 + 3*1+1: Params right beside the module's name
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in range(2)] == ["Module", "Params"]
    assert model.index(0, 5, root).data() == "in_features=4, out_features=3, bias=True"


def test_tree_is_lazy_for_modules_with_thousands_of_children(qtmodeltester):
    net = nn.Sequential(*[nn.Linear(1, 1) for _ in range(FETCH_BATCH * 2 + 10)])
    model = ModuleTreeModel(build_report(net))
    root = model.index(0, 0)
    assert model.rowCount(root) == FETCH_BATCH
    assert model.canFetchMore(root)
    model.fetchMore(root)
    assert model.rowCount(root) == 2 * FETCH_BATCH
    # Selecting a module beyond the fetched rows fetches up to it.
    last = model.index_of(str(FETCH_BATCH * 2 + 9))
    assert last.isValid() and last.data() == str(FETCH_BATCH * 2 + 9)
    assert not model.canFetchMore(root)
    qtmodeltester.check(model)


def test_tree_highlight_and_badges_for_shared():
    report = build_report(build_demo("shared"))
    model = ModuleTreeModel(report)
    root = model.index(0, 0)
    first, second = model.index(0, 0, root), model.index(1, 0, root)
    assert "tied" in first.siblingAtColumn(4).data()
    assert "tied" in second.siblingAtColumn(4).data()
    assert first.data(Qt.ItemDataRole.BackgroundRole) is None
    model.set_highlight({"0", "1"})
    assert first.data(Qt.ItemDataRole.BackgroundRole) == colors.TIED_HIGHLIGHT
    assert second.data(Qt.ItemDataRole.BackgroundRole) == colors.TIED_HIGHLIGHT
    assert root.data(Qt.ItemDataRole.BackgroundRole) is None


def test_table_model_passes_model_tester_with_proxy(qtmodeltester):
    session = session_of(build_demo("cnn"))
    model = ParameterTableModel()
    model.set_module(session, "")
    qtmodeltester.check(model)
    proxy = ParameterFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filter_text("running")
    qtmodeltester.check(proxy)
    assert sorted(proxy.index(r, COL_NAME).data() for r in range(proxy.rowCount())) == [
        "features.1.running_mean", "features.1.running_var",
        "features.5.running_mean", "features.5.running_var",
    ]  # fmt: skip


def test_table_relative_names_and_numeric_sort():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    session = session_of(net)
    model = ParameterTableModel()
    model.set_module(session, "0")
    assert [model.index(r, COL_NAME).data() for r in range(2)] == ["weight", "bias"]
    assert [model.index(r, COL_SHAPE).data() for r in range(2)] == ["[3, 4]", "[3]"]
    assert model.index(0, COL_MEAN).data() == "…"  # statistics not computed yet

    with torch.no_grad():
        net[0].weight.fill_(10.0)
        net[0].bias.fill_(-2.0)
    model.set_module(session, "")
    for name in session.report.parameters:
        session.ensure_summary(name)
    proxy = ParameterFilterProxy()
    proxy.setSourceModel(model)
    proxy.sort(COL_MEAN, Qt.SortOrder.DescendingOrder)
    # Numbers sort as numbers: 10 before the small values, -2 last ("10" < "2" as text).
    order = [proxy.index(r, COL_NAME).data(NAME_ROLE) for r in range(proxy.rowCount())]
    assert order[0] == "0.weight" and order[-1] == "0.bias"


def test_table_marks_ties_and_nonfinite_rows():
    net = build_demo("shared")
    session = session_of(net)
    model = ParameterTableModel()
    model.set_module(session, "1")  # the second alias: relative name "weight"
    assert model.index(0, COL_NAME).data() == "weight"
    assert model.index(0, COL_ALIASES).data() == "0.weight, 1.weight"
    assert model.index(0, COL_NAME).data(Qt.ItemDataRole.DecorationRole) is not None
    assert "1.weight" in model.index(0, COL_NAME).data(Qt.ItemDataRole.ToolTipRole)

    with torch.no_grad():
        net[0].weight.fill_(float("nan"))
    session.ensure_summary("0.weight")
    model.summaries_changed(("0.weight",))
    assert model.index(0, COL_NAME).data(Qt.ItemDataRole.BackgroundRole) == colors.NONFINITE_BACKGROUND
    model.set_highlight({"0.weight"})
    assert model.index(0, COL_NAME).data(Qt.ItemDataRole.BackgroundRole) == colors.TIED_HIGHLIGHT


def test_tree_shows_inferred_types_for_a_checkpoint_without_code(tmp_path):
    from paramscope.core.sources.sources import open_source
    from paramscope.gui.models.tree_model import COL_DETAILS, COL_TYPE

    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)).state_dict(), tmp_path / "sd.pt")
    model = ModuleTreeModel(build_report(open_source(str(tmp_path / "sd.pt")).model))
    root = model.index(0, 0)
    linear, norm = model.index(0, COL_TYPE, root), model.index(1, COL_TYPE, root)
    assert (linear.data(), norm.data()) == ("Linear (inferred)", "LayerNorm (inferred)")
    assert model.index(0, COL_DETAILS, root).data() == "Linear(in_features=4, out_features=3), inferred from shapes"
    assert "guessed" in linear.data(Qt.ItemDataRole.ToolTipRole)
    assert model.index(0, COL_TYPE).data() == "StateDictModule"  # the root holds no tensors of its own
    proxy = ModuleFilterProxy()
    proxy.setSourceModel(model)
    proxy.set_filter_text("layernorm")  # the filter finds what the column shows
    assert proxy.rowCount(proxy.index(0, 0)) == 1


def test_a_deep_tree_leaves_room_for_params_in_a_narrow_dock(qtbot):
    """Indentation of a deep model must not push the Params column out of the dock."""
    from paramscope.gui.models.tree_model import COL_NAME, COL_TOTAL
    from paramscope.gui.panels.tree_panel import ModuleTreePanel
    from paramscope.gui.state import AppState

    deep: nn.Module = nn.Linear(2, 2)
    for i in range(14):
        deep = nn.Sequential(deep) if i % 2 else nn.ModuleDict({f"block_with_a_long_name_{i}": deep})
    state = AppState()
    panel = ModuleTreePanel(state)
    qtbot.addWidget(panel)
    panel.resize(340, 500)
    panel.show()
    state.open_model(OpenedModel(deep, "deep", "live"))
    header = panel.view.header()
    assert header.sectionPosition(COL_TOTAL) + 40 < panel.view.viewport().width()  # Params shows
    assert header.sectionSize(COL_NAME) <= max(160, int(panel.view.viewport().width() * 0.6))
