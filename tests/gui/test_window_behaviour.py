"""Issue 16: the window's first look, input widgets that behave, errors shown once, themes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QKeySequence, QWheelEvent
from PySide6.QtWidgets import QApplication, QMessageBox, QScrollArea

from paramscope.core.errors import SourceError
from paramscope.core.model.tensor_stats import tensor_histogram
from paramscope.core.sources.sources import open_source
from paramscope.gui import theme
from paramscope.gui.app.first_look import first_look_tensor
from paramscope.gui.plots.histogram_view import HistogramView, bars_to_draw


def _wheel(widget, dy: int = -120) -> QWheelEvent:
    event = QWheelEvent(
        QPointF(5, 5), QPointF(widget.mapToGlobal(QPoint(5, 5))), QPoint(0, 0), QPoint(0, dy),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(widget, event)
    return event


def test_opening_selects_the_largest_weight_of_the_first_layer(open_demo):
    window = open_demo("tiny_lm")
    report = window.state.session.report
    chosen = report.tensor(window.state.selected_tensor)
    assert chosen.shape is not None and len(chosen.shape) >= 2
    assert window.histogram_panel.view.current is not None or window.state.selected_tensor
    assert first_look_tensor(report) == window.state.selected_tensor
    # the root's own zero positional table (`pos`) is not a layer: the embedding is
    assert window.state.selected_tensor == "embed.weight"


def test_wheel_over_an_unfocused_combo_scrolls_the_panel_not_the_value(open_demo, qtbot):
    window = open_demo("mlp")
    window.raise_dock(window.init_dock)
    combo = window.init_panel.initializer_combo
    before = combo.currentData()
    for _ in range(5):
        _wheel(combo)
        _wheel(combo, 120)
    assert combo.currentData() == before == "normal_"
    spin = next(iter(w for w in window.init_panel.fields.values() if hasattr(w, "value")))
    value = spin.value()
    _wheel(spin)
    assert spin.value() == value
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    _wheel(spin)  # a focused field does take the wheel
    assert spin.value() != value


def test_histogram_never_zooms_into_negative_counts(qtbot):
    view = HistogramView()
    qtbot.addWidget(view)
    view.set_histograms(tensor_histogram(torch.randn(1000), bins=20))
    assert view.plot.getViewBox().state["limits"]["yLimits"][0] == 0.0
    view.log_y.setChecked(True)
    assert view.plot.getViewBox().state["limits"]["yLimits"][0] < 0  # the log floor, below one count


@pytest.mark.parametrize("value", [0.0, 0.5, -3.0])
def test_a_constant_tensors_bar_is_centred_on_its_value(value):
    hist = tensor_histogram(torch.full((7,), value))
    edges, counts = bars_to_draw(np.asarray(hist.edges), np.asarray(hist.counts))
    assert counts.tolist() == [7]
    assert np.isclose((edges[0] + edges[1]) / 2, value)
    varied = tensor_histogram(torch.randn(100), bins=10)
    same_edges, same_counts = bars_to_draw(np.asarray(varied.edges), np.asarray(varied.counts))
    assert same_edges is not None and len(same_counts) == 10


def test_legend_sits_outside_the_bars(qtbot):
    view = HistogramView()
    qtbot.addWidget(view)
    now = tensor_histogram(torch.randn(1000), bins=20)
    view.set_histograms(now, tensor_histogram(torch.rand(1000), bins=20))
    assert view.legend.parentItem() is not view.plot.getViewBox()
    assert view.legend.scene() is view.plot.scene()


def test_ctrl_y_redoes(window):
    keys = [k.toString() for k in window.redo_action.shortcuts()]
    assert QKeySequence("Ctrl+Y").toString() in keys


def test_enter_in_the_backward_input_runs(open_demo, qtbot):
    window = open_demo("mlp")
    panel = window.backward_panel
    with qtbot.waitSignal(panel.finished, timeout=60_000):
        panel.input_edit.returnPressed.emit()


def test_an_error_shown_in_its_panel_is_not_repeated_in_a_dialog(open_demo, qtbot):
    window = open_demo("mlp")
    window.interactive = True
    window.raise_dock(window.backward_dock)
    qtbot.waitUntil(lambda: not window.backward_dock.visibleRegion().isEmpty())
    panel = window.backward_panel
    panel.input_edit.setText("rand(7, 99)")
    with qtbot.waitSignal(panel.failed, timeout=60_000):
        panel.run_backward()
    qtbot.wait(50)
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert not boxes, [b.text() for b in boxes]
    assert "rand(7, 99)" in panel.status.text() or panel.status.text()
    window.interactive = False


def test_a_stale_message_does_not_survive_opening_another_model(open_demo):
    window = open_demo("mlp")
    window.init_panel._error("something about demo:mlp")
    window.statusBar().showMessage("about demo:mlp")
    open_demo("cnn")
    assert window.init_panel.message.text() == ""
    assert window.statusBar().currentMessage() == ""


def test_theme_menu_applies_and_remembers(window, qapp):
    try:
        window.theme_actions["dark"].trigger()
        assert theme.saved_theme() == "dark" and theme.current_theme() == "dark"
        assert window.histogram_panel.view.plot_widget.backgroundBrush().color().lightness() < 80
    finally:
        theme.choose_theme("system")
    assert theme.saved_theme() == "system"


def test_a_pickled_module_whose_class_is_gone_is_one_line(tmp_path, monkeypatch):
    module = tmp_path / "gone_module_16.py"
    module.write_text("from torch import nn\nclass Net(nn.Module):\n    def __init__(self):\n"
                      "        super().__init__()\n        self.fc = nn.Linear(3, 2)\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    import gone_module_16

    torch.save(gone_module_16.Net(), tmp_path / "whole.pt")
    monkeypatch.delitem(__import__("sys").modules, "gone_module_16")
    module.unlink()
    with pytest.raises(SourceError) as caught:
        open_source(str(tmp_path / "whole.pt"), trust=True)
    assert "cannot be imported" in str(caught.value) and "\n" not in str(caught.value)


def test_long_forms_do_not_widen_their_dock(open_demo, qtbot):
    window = open_demo("tiny_lm")
    window.backward_panel.run_backward()
    qtbot.waitUntil(lambda: not window.backward_panel.is_running, timeout=60_000)
    with qtbot.waitSignal(window.init_panel.previewReady, timeout=60_000):  # its message shown
        assert window.init_panel.preview()
    for panel in (window.backward_panel, window.init_panel.findChild(QScrollArea).widget()):
        assert panel.minimumSizeHint().width() <= 300, panel
