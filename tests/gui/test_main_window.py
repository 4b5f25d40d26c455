"""The main window as a user drives it: open a demo, select modules, tensors and tied groups."""

from __future__ import annotations

import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication

from paramscope.core.edit.commands import TensorEditCommand
from paramscope.gui import colors
from paramscope.gui.app.window_status import SHOW_AFTER_MS
from paramscope.gui.models.param_table import COL_MEAN, COL_NAME, COL_SHAPE, NAME_ROLE
from paramscope.gui.models.tree_model import COL_TYPE


def table_column(window, column: int, role=Qt.ItemDataRole.DisplayRole) -> list:
    proxy = window.param_panel.proxy
    return [proxy.index(r, column).data(role) for r in range(proxy.rowCount())]


def tree_index(window, module: str):
    panel = window.tree_panel
    return panel.proxy.mapFromSource(panel.model.index_of(module))


def select_in_tree(window, module: str) -> None:
    window.tree_panel.view.setCurrentIndex(tree_index(window, module))


def test_open_mlp_shows_tree_and_module_parameters(open_demo):
    window = open_demo("mlp")
    proxy = window.tree_panel.proxy
    root = proxy.index(0, 0)
    assert proxy.index(0, COL_TYPE).data() == "Sequential"
    assert [proxy.index(r, 0, root).data() for r in range(proxy.rowCount(root))] == ["0", "1", "2"]
    assert "demo:mlp" in window.windowTitle()

    select_in_tree(window, "0")  # what a click does
    assert window.state.selected_module == "0"
    assert table_column(window, COL_NAME) == ["weight", "bias"]
    assert table_column(window, COL_SHAPE) == ["[3, 4]", "[3]"]
    means = table_column(window, COL_MEAN)
    assert all(m and m != "…" for m in means)  # statistics filled in
    expected = window.state.session.tensor("0.weight").double().mean().item()
    assert float(means[0]) == float(f"{expected:.4g}")


def test_statistics_fill_in_from_the_worker(window, qtbot):
    assert window.open_source("demo:cnn")
    window.state.select_module("")
    # The tree and table are there before the statistics are.
    assert window.tree_panel.model.rowCount() == 1
    assert window.param_panel.proxy.rowCount() == 16
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        pass
    assert "…" not in table_column(window, COL_MEAN)
    assert window.progress_bar.isHidden()


def test_quick_work_flashes_no_progress_bar(window, qtbot):
    """A demo's statistics took a blink and flashed a bar in the status bar: a bar appears only
    for work still running after SHOW_AFTER_MS."""
    status = window.status
    bar, button = status.stats.progress_bar, status.stats.button
    status.stats_started()
    assert bar.isHidden() and button.isHidden()
    status.stats_done(still_running=False)  # done within the delay
    qtbot.wait(SHOW_AFTER_MS + 100)
    assert bar.isHidden() and button.isHidden()
    status.stats_started()  # still running after it: shown
    qtbot.waitUntil(lambda: bar.isVisible() and button.isVisible(), timeout=5_000)
    status.stats_done(still_running=False)
    assert bar.isHidden() and button.isHidden()


def test_selecting_a_row_selects_the_tensor_and_shows_histogram(open_demo):
    window = open_demo("mlp")
    window.param_panel.view.selectRow(2)
    assert window.state.selected_tensor == "2.weight"
    assert window.histogram_panel.view.current is not None
    assert int(window.histogram_panel.view.current.counts.sum()) == 3
    assert "2.weight" in window.selection_label.text()
    assert window.value_grid.model.columnCount() == 3  # [1, 3] as print(param) shows it


def test_tied_group_highlights_every_alias_in_tree_and_table(open_demo):
    window = open_demo("shared")
    groups = window.tied_panel.list
    assert groups.topLevelItemCount() == 1
    assert groups.topLevelItem(0).text(0) == "0.weight = 1.weight"
    highlight = Qt.ItemDataRole.BackgroundRole
    assert tree_index(window, "0").data(highlight) is None

    groups.setCurrentItem(groups.topLevelItem(0))  # the user clicks the group
    assert window.state.selected_group == 0
    for module in ("0", "1"):
        assert tree_index(window, module).data(highlight) == colors.TIED_HIGHLIGHT
    assert tree_index(window, "").data(highlight) is None
    for module in ("0", "1"):
        window.state.select_module(module)
        assert table_column(window, COL_NAME) == ["weight"]
        assert table_column(window, COL_NAME, highlight) == [colors.TIED_HIGHLIGHT]
    window.state.select_module("")
    assert table_column(window, COL_NAME) == ["0.weight"]  # one tensor, counted once
    assert table_column(window, COL_NAME, highlight) == [colors.TIED_HIGHLIGHT]

    groups.clearSelection()
    assert window.state.selected_group == -1
    assert tree_index(window, "1").data(highlight) is None


def test_tiny_lm_embedding_and_head_are_one_group(open_demo):
    window = open_demo("tiny_lm")
    window.state.select_tied_group(0)
    assert window.tied_panel.list.topLevelItem(0).text(0) == "embed.weight = head.weight"
    highlighted = [
        window.tree_panel.model.module(window.tree_panel.model.index_of(m)).name
        for m in window.state.session.report.modules
        if window.tree_panel.model.index_of(m).data(Qt.ItemDataRole.BackgroundRole) == colors.TIED_HIGHLIGHT
    ]
    assert sorted(highlighted) == ["embed", "head"]
    window.state.select_module("head")
    assert table_column(window, COL_NAME, NAME_ROLE) == ["embed.weight"]
    assert table_column(window, COL_NAME) == ["weight"]
    assert table_column(window, COL_NAME, Qt.ItemDataRole.BackgroundRole) == [colors.TIED_HIGHLIGHT]


def test_diagnostics_list_unregistered_weight2_first(open_demo):
    window = open_demo("unregistered")
    messages = window.diagnostics_panel.messages()
    assert "weight2" in messages[0]
    assert not any("weight1" in m and "plain tensor" in m for m in messages)
    item = window.diagnostics_panel.list.topLevelItem(0)
    window.diagnostics_panel.list.itemClicked.emit(item, 0)
    assert window.state.selected_module == ""  # weight2 lives on the root module


def test_clicking_a_tensor_diagnostic_selects_it(open_demo, qtbot):
    window = open_demo("cnn")
    bias = window.state.session.tensor("classifier.bias")
    command = TensorEditCommand("poison", [("classifier.bias", bias)], lambda: bias.fill_(float("inf")))
    assert window.state.execute(command)
    panel = window.diagnostics_panel
    # The statistics worker recomputes the changed tensor; the diagnostics refresh when it lands.
    qtbot.waitUntil(lambda: any("Inf" in m for m in panel.messages()), timeout=30_000)
    index = next(i for i, m in enumerate(panel.messages()) if "Inf" in m)
    panel.list.itemClicked.emit(panel.list.topLevelItem(index), 0)
    assert window.state.selected_tensor == "classifier.bias"
    assert window.state.selected_module == "classifier"
    red = table_column(window, COL_NAME, Qt.ItemDataRole.BackgroundRole)
    assert red == [None, colors.NONFINITE_BACKGROUND]


def test_copy_selected_rows_as_tsv(open_demo):
    window = open_demo("mlp")
    window.param_panel.view.selectRow(0)
    window.param_panel.view.selectionModel().select(
        window.param_panel.proxy.index(1, 0),
        window.param_panel.view.selectionModel().SelectionFlag.Select
        | window.param_panel.view.selectionModel().SelectionFlag.Rows,
    )
    window.param_panel.copy_action.trigger()
    lines = QGuiApplication.clipboard().text().splitlines()
    header = lines[0].split("\t")
    assert header[:3] == ["Name", "Shape", "dtype"]
    assert len(lines) == 3
    first = dict(zip(header, lines[1].split("\t"), strict=True))
    assert first["Name"] == "0.weight" and first["Shape"] == "[3, 4]" and first["numel"] == "12"


def test_table_filter_box(open_demo):
    window = open_demo("cnn")
    window.param_panel.filter_box.setText("running_var")
    assert table_column(window, COL_NAME) == ["features.1.running_var", "features.5.running_var"]
    window.tree_panel.filter_box.setText("batchnorm")
    proxy = window.tree_panel.proxy
    features = proxy.index(0, 0, proxy.index(0, 0))
    assert [proxy.index(r, COL_TYPE, features).data() for r in range(proxy.rowCount(features))] == [
        "BatchNorm2d",
        "BatchNorm2d",
    ]


def test_undo_redo_actions_follow_the_stack(open_demo, qtbot):
    window = open_demo("mlp")
    session = window.state.session
    assert not window.undo_action.isEnabled()
    bias = session.tensor("0.bias")
    command = TensorEditCommand("bias += 1", [("0.bias", bias)], lambda: bias.add_(1.0))
    before = bias.detach().clone()
    assert window.state.execute(command)
    assert window.undo_action.isEnabled() and "bias += 1" in window.undo_action.text()
    assert window.isWindowModified()
    window.undo_action.trigger()
    assert torch.equal(bias.detach(), before)
    assert window.redo_action.isEnabled() and not window.undo_action.isEnabled()
    assert not window.isWindowModified()
    window.redo_action.trigger()
    assert torch.equal(bias.detach(), before + 1)
    # The previous state is overlaid once the new statistics arrive.
    window.state.select_tensor("0.bias")
    qtbot.waitUntil(lambda: session.summary("0.bias") is not None, timeout=30_000)
    window.histogram_panel.refresh()
    assert window.histogram_panel.view.previous is not None


def test_bad_source_is_a_message_and_keeps_the_model(open_demo, qtbot):
    window = open_demo("mlp")
    with qtbot.waitSignal(window.errorShown) as blocker:
        assert not window.open_source("demo:nope")
    assert "demo:nope" in blocker.args[0]
    assert window.state.session.opened.source == "demo:mlp"


def test_dropping_a_python_file_opens_it(window, qtbot, tmp_path):
    source = tmp_path / "net.py"
    source.write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(2, 5)\n"
    )
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(source))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    assert window.state.session.opened.source == f"{source}:Net"
    assert "fc.weight" in window.state.session.report.parameters
    from paramscope.gui.app.opening import recent_files

    assert recent_files()[0] == f"{source}:Net"
