"""Filtering the module tree of a checkpoint with thousands of modules (issue 14, item 6).

Qt's recursive filtering asked every row of a 110,000-module tree whether a descendant matched
(3.4 s on the GUI thread for ``blocks.99``), and the filter then expanded every matching row
(2.2 s for ``layers``). The rows a filter shows are now worked out once in Python; only the
first matches are expanded when there are very many.
"""

from __future__ import annotations

import pytest

import paramscope.gui.panels.tree_panel as tree_panel
from paramscope.core.model.report import build_report
from paramscope.core.sources.demos import build_demo
from paramscope.gui.models.tree_model import modules_matching
from paramscope.gui.panels.tree_panel import ModuleTreePanel

COUNT = 300  # blocks.{0..29}.layers.{0..9}.weight


def shown_rows(panel: ModuleTreePanel) -> list[str]:
    """Qualified names of the rows the view shows (expanded ones walked), depth first."""
    proxy, view, out = panel.proxy, panel.view, []

    def walk(parent) -> None:
        for row in range(proxy.rowCount(parent)):
            index = proxy.index(row, 0, parent)
            out.append(index.data(tree_panel.NAME_ROLE))
            if view.isExpanded(index):
                walk(index)

    walk(view.rootIndex())
    return out


@pytest.fixture
def panel(qtbot, many_tensors_state):
    widget = ModuleTreePanel(many_tensors_state(COUNT))
    qtbot.addWidget(widget)
    return widget


def test_matches_come_with_every_ancestor_and_nothing_else():
    report = build_report(build_demo("tiny_lm"))
    matches, shown = modules_matching(report, "linear2")
    assert matches == ["blocks.layers.0.linear2", "blocks.layers.1.linear2"]
    assert shown == {"", "blocks", "blocks.layers", "blocks.layers.0", "blocks.layers.1", *matches}
    matches, shown = modules_matching(report, "layernorm")  # by type too
    assert matches and all(report.modules[m].type_name == "LayerNorm" for m in matches)


def test_a_filter_shows_the_matching_modules_expanded_with_their_ancestors(panel):
    panel.filter_box.setText("blocks.2")  # blocks.2 and blocks.20-29, each with .layers and its ten
    rows = shown_rows(panel)
    blocks = ["blocks.2", *(f"blocks.{k}" for k in range(20, 30))]
    assert rows[:3] == ["", "blocks", "blocks.2"]
    assert [r for r in rows if r.count(".") == 1] == blocks
    assert len(rows) == 2 + len(blocks) * 12  # root, blocks, then every block and what it holds
    panel.filter_box.setText("")
    assert panel.proxy.rowCount(panel.proxy.index(0, 0)) == 1
    assert panel.proxy.rowCount(panel.proxy.index(0, 0, panel.proxy.index(0, 0))) == COUNT // 10


def test_very_many_matches_expand_only_the_first(panel, monkeypatch):
    monkeypatch.setattr(tree_panel, "FILTER_EXPAND_ALL_UP_TO", 50)
    monkeypatch.setattr(tree_panel, "SHOWN_MATCHES", 3)
    panel.filter_box.setText("layers")  # 330 matches: every blocks.k.layers and its ten
    rows = shown_rows(panel)
    assert rows[:4] == ["", "blocks", "blocks.0", "blocks.0.layers"]
    assert "blocks.0.layers.0" in rows and "blocks.1" in rows  # the first opened, the rest listed
    assert "blocks.1.layers" not in rows  # not expanded
    assert len(rows) < 60


def test_a_typed_filter_applies_to_the_next_model_opened(panel):
    panel.filter_box.setText("linear2")
    assert panel.state.open("demo:tiny_lm")
    assert [r for r in shown_rows(panel) if r.endswith("linear2")] == ["blocks.layers.0.linear2", "blocks.layers.1.linear2"]
    assert "embed" not in shown_rows(panel)
