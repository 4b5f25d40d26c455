"""The Initialize panel, driven like a user would: pick, fill the form, preview, apply, undo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from torch.nn import init

from paramscope.gui.panels.histogram_panel import HistogramPanel
from paramscope.gui.panels.init_panel import CUSTOM, RULE, SELECTED_MODULE, InitPanel
from paramscope.gui.panels.init_targets import WRAPPED_LINES
from paramscope.gui.state import AppState


@pytest.fixture
def panel(qtbot):
    def make(spec: str = "demo:mlp") -> InitPanel:
        state = AppState()
        assert state.open(spec)
        widget = InitPanel(state)
        qtbot.addWidget(widget)
        return widget

    return make


def items(widget: InitPanel) -> list[str]:
    return [widget.targets_list.item(i).text() for i in range(widget.targets_list.count())]


def test_form_is_generated_from_the_signature(panel):
    widget = panel()
    widget.set_initializer("kaiming_normal_")
    assert list(widget.fields) == ["a", "mode", "nonlinearity"]
    assert widget.fields["mode"].count() == 2 and widget.fields["nonlinearity"].currentText() == "leaky_relu"
    widget.set_initializer("constant_")
    assert list(widget.fields) == ["val"]
    widget.set_initializer(CUSTOM)
    assert widget.fields == {} and "init_weight_" in widget.custom_editor.toPlainText()
    assert "runs as Python" in widget.custom_warning.text()


def test_normal_std_001_on_weights_then_undo_restores_bytes(panel, qtbot):
    widget = panel()
    state = widget.state
    session = state.session
    before = {k: v.clone() for k, v in session.model.state_dict().items()}
    widget.target_mode.setCurrentIndex(widget.target_mode.findData(RULE))
    widget.rule_edit.setText("*")
    widget.biases_box.setChecked(False)  # the tutorial's 'weight' in name
    assert items(widget) == ["0.weight", "2.weight"]
    widget.set_initializer("normal_")
    widget.set_field("std", 0.01)
    widget.seed_edit.setText("42")
    state.select_tensor("0.weight")
    histogram = HistogramPanel(state)  # the main window's histogram, on the same state
    qtbot.addWidget(histogram)
    widget.theoryChanged.connect(histogram.set_theory)
    with qtbot.waitSignal(widget.applied) as applied:
        qtbot.mouseClick(widget.apply_button, Qt.MouseButton.LeftButton)
    assert applied.args[0] == ("0.weight", "2.weight")
    generator = torch.Generator().manual_seed(42)
    expected = before["0.weight"].clone()
    init.normal_(expected, 0.0, 0.01, generator=generator)
    assert torch.equal(session.tensor("0.weight"), expected)  # same bytes as a plain script
    assert torch.equal(session.tensor("0.bias"), before["0.bias"])
    # before/after curves and the theory are drawn in the main histogram
    view = histogram.view
    _, now_y = view.current_item.getData()
    _, before_y = view.previous_item.getData()
    _, theory_y = view.theory_item.getData()
    assert now_y is not None and before_y is not None and theory_y is not None
    assert view.current_item.isVisible() and view.previous_item.isVisible() and view.theory_item.isVisible()
    assert now_y.sum() == 12 and before_y.sum() == 12
    assert widget.theory_label.text() == "normal_, mean=0, std=0.01"
    assert session.previous_summary("0.weight") is not None
    session.undo()
    for name, tensor in session.model.state_dict().items():
        assert torch.equal(tensor, before[name])


def test_preview_does_not_touch_the_model_and_apply_writes_what_was_previewed(panel, qtbot):
    widget = panel()
    state = widget.state
    state.select_tensor("0.weight")
    widget.set_initializer("kaiming_uniform_")
    widget.set_field("nonlinearity", "relu")
    before = state.session.tensor("0.weight").detach().clone()
    with qtbot.waitSignal(widget.previewReady) as ready:
        qtbot.mouseClick(widget.preview_button, Qt.MouseButton.LeftButton)
    name, histogram, theory = ready.args
    assert name == "0.weight" and histogram.total == 12
    assert theory[2] == "kaiming_uniform_, fan_in=4, gain=√2 → bound=±1.22"
    assert torch.equal(state.session.tensor("0.weight"), before)
    assert widget.apply()
    applied_hist = state.session.ensure_summary("0.weight").histogram
    assert np.array_equal(applied_hist.counts, histogram.counts)
    assert np.array_equal(applied_hist.edges, histogram.edges)


def test_tied_alias_warning_and_shared_weight_changes(panel):
    widget = panel("demo:shared")
    widget.target_mode.setCurrentIndex(widget.target_mode.findData(RULE))
    widget.rule_edit.setText("1.weight")
    assert any("also changes 1.weight" in line or "also changes 0.weight" in line for line in items(widget))
    widget.set_initializer("constant_")
    widget.set_field("val", 3.0)
    assert widget.apply()
    model = widget.state.session.model
    assert model[0].weight.item() == 3.0 and model[0].weight is model[1].weight


def test_refused_targets_are_listed_and_nothing_is_applied(panel, qtbot):
    widget = panel()
    state = widget.state
    state.select_module("0")
    widget.target_mode.setCurrentIndex(widget.target_mode.findData(SELECTED_MODULE))
    widget.set_initializer("xavier_uniform_")
    assert any("REFUSED" in line and "0.bias" in line for line in items(widget))
    before = state.session.tensor("0.weight").detach().clone()
    with qtbot.waitSignal(state.errorOccurred) as error:
        assert not widget.apply()
    assert "0.bias" in error.args[0] and "nothing applied" in error.args[0]
    assert torch.equal(state.session.tensor("0.weight"), before)
    widget.skip_refused.setChecked(True)
    assert widget.apply()
    assert not torch.equal(state.session.tensor("0.weight"), before)
    assert "skipped 0.bias" in widget.message.text()


def test_custom_bimodal_example_from_the_editor(panel):
    widget = panel()
    widget.target_mode.setCurrentIndex(widget.target_mode.findData(RULE))
    widget.rule_edit.setText("*.weight")
    widget.set_initializer(CUSTOM)
    widget.seed_edit.setText("1")
    assert widget.apply()
    for name in ("0.weight", "2.weight"):
        value = widget.state.session.tensor(name).detach().abs()
        assert bool(((value == 0) | ((value >= 5) & (value <= 10))).all())


def test_bad_custom_code_and_bad_seed_are_reported_not_raised(panel, qtbot):
    widget = panel()
    widget.state.select_tensor("0.weight")
    widget.set_initializer(CUSTOM)
    widget.custom_editor.setPlainText("def broken(t):\n    raise RuntimeError('boom')\n")
    widget.custom_function.setText("")
    with qtbot.waitSignal(widget.state.errorOccurred) as error:
        assert not widget.apply()
    assert "boom" in error.args[0]
    widget.set_initializer("normal_")
    widget.seed_edit.setText("abc")
    with qtbot.waitSignal(widget.state.errorOccurred):
        assert not widget.apply()
    assert not widget.state.session.stack.can_undo


def test_value_edit_plus_one_on_biases_keeps_gradients(panel):
    widget = panel()
    session = widget.state.session
    session.model(torch.ones(2, 4)).sum().backward()
    grad = session.tensor("0.bias").grad.clone()
    before = session.tensor("0.bias").detach().clone()
    widget.target_mode.setCurrentIndex(widget.target_mode.findData(RULE))
    widget.rule_edit.setText("*")
    widget.weights_box.setChecked(False)
    widget.edit_kind.setCurrentText("add")
    widget.edit_value.setValue(1.0)
    assert widget.apply_value_edit()
    assert torch.equal(session.tensor("0.bias").detach(), before + 1)
    assert torch.equal(session.tensor("0.bias").grad, grad)
    widget.edit_kind.setCurrentText("expression")
    widget.expression_edit.setText("__import__('os').getpid()")
    assert not widget.apply_value_edit()
    assert "attribute access" in widget.message.text() or "not allowed" in widget.message.text()


def test_main_window_has_the_initialize_dock_and_shows_before_after(window, open_demo):
    open_demo("mlp")
    panel = window.init_panel
    assert window.init_dock.isAncestorOf(panel)  # inside the dock (in a scroll area)
    window.state.select_tensor("0.weight")
    panel.set_initializer("normal_")
    panel.set_field("std", 0.01)
    assert panel.apply()
    histogram = window.histogram_panel.view
    assert histogram.previous_item.isVisible() and histogram.current_item.isVisible()
    assert histogram.theory_item.isVisible()
    window.undo()
    assert not window.state.session.stack.can_undo


def test_undo_memory_is_shown_and_edits_export_as_a_replay_script(panel, tmp_path):
    import subprocess
    import sys

    widget = panel()
    assert widget.undo_label.text().startswith("Undo memory: 0.0 of 512 MiB")
    widget.state.select_tensor("0.weight")
    widget.seed_edit.setText("3")
    assert widget.apply()
    assert "Undo memory" in widget.undo_label.text()
    script, out = tmp_path / "replay.py", tmp_path / "out.pt"
    assert widget.export_script(script)
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    replayed = torch.load(out, weights_only=True)
    assert torch.equal(replayed["0.weight"], widget.state.session.tensor("0.weight").detach())
    assert not widget.export_script(tmp_path / "missing" / "x.py")


def test_long_target_names_elide_instead_of_scrolling_sideways(panel, qtbot):
    """A narrow dock: each row is as wide as the list (the text elides, the tooltip has it all)."""
    widget = panel("demo:tiny_lm")
    widget.resize(260, 600)
    widget.show()
    widget.target_mode.setCurrentIndex(widget.target_mode.findData(RULE))
    widget.rule_edit.setText("*")
    widget.refresh_targets()
    qtbot.waitUntil(lambda: widget.targets_list.count() > 3)
    listing = widget.targets_list
    assert not listing.horizontalScrollBar().isVisible()
    longest = max(range(listing.count()), key=lambda i: len(listing.item(i).text()))
    # the list lays its rows out on the event loop
    qtbot.waitUntil(lambda: listing.visualItemRect(listing.item(longest)).width() <= listing.viewport().width())
    assert listing.item(longest).toolTip() == listing.item(longest).text()


def test_a_refusal_wraps_to_be_read_whole_in_a_narrow_dock(panel, qtbot):
    """Cut in the middle, "model.layers.3.mlp.down_p….g. its bfloat16 release)" said neither
    what nor why; a few lines wrap instead (many stay one row each: they lay out at once)."""
    widget = panel()
    widget.resize(260, 600)
    widget.show()
    widget.state.select_tensor("0.bias")
    widget.set_initializer("xavier_uniform_")  # needs 2 dimensions: refused for a bias
    listing = widget.targets_list
    refused = next(i for i in range(listing.count()) if "REFUSED" in listing.item(i).text())
    line = listing.fontMetrics().height()
    qtbot.waitUntil(lambda: listing.visualItemRect(listing.item(refused)).height() >= 2 * line)
    assert listing.visualItemRect(listing.item(refused)).width() <= listing.viewport().width()
    assert not listing.horizontalScrollBar().isVisible()
    many = panel("demo:tiny_lm")
    many.target_mode.setCurrentIndex(many.target_mode.findData(RULE))
    many.rule_edit.setText("*")
    many.refresh_targets()
    listing = many.targets_list
    assert listing.count() > WRAPPED_LINES and listing.uniformItemSizes() and not listing.wordWrap()
