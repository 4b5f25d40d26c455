"""Histogram view and value grid: what they show for ordinary and odd tensors."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from plot_labels import drawn_labels
from PySide6.QtCore import QPointF

from paramscope.core.model.tensor_stats import Histogram, tensor_histogram
from paramscope.gui.panels.value_grid import MAX_ELEMENTS, grid_of
from paramscope.gui.plots.histogram_view import HistogramView


def test_histogram_shows_nan_and_inf_beside_the_bars(qtbot):
    view = HistogramView()
    qtbot.addWidget(view)
    values = torch.tensor([0.0, 1.0, 1.0, float("nan"), float("inf"), float("-inf"), float("-inf")])
    view.set_histograms(tensor_histogram(values, bins=4), title="t")
    text = view.nonfinite_label.text()
    assert "finite: 3" in text and "NaN: 1" in text and "+Inf: 1" in text and "-Inf: 2" in text
    x, y = view.current_item.getData()
    assert y.sum() == 3  # only finite values are bars; the others are counted beside them
    assert not view.previous_item.isVisible()


def test_histogram_overlays_previous_and_theory_with_a_legend(qtbot):
    view = HistogramView()
    qtbot.addWidget(view)
    now = tensor_histogram(torch.randn(1000), bins=20)
    before = tensor_histogram(torch.rand(1000), bins=20)
    xs = np.linspace(-4, 4, 101)  # includes 0, the peak
    view.set_histograms(now, before, (xs, np.exp(-xs**2 / 2) / np.sqrt(2 * np.pi), "N(0, 1)"))
    assert view.previous_item.isVisible() and view.theory_item.isVisible()
    labels = [label.text for _sample, label in view.legend.items]
    assert labels == ["now", "before", "N(0, 1)"]
    # The density is scaled to counts: its peak is near 1000 * bin width * 0.399.
    _, y = view.theory_item.getData()
    width = float(now.edges[1] - now.edges[0])
    assert np.isclose(np.nanmax(y), 1000 * width / np.sqrt(2 * np.pi))
    view.log_y.setChecked(True)
    _, y_log = view.current_item.getData()
    assert np.nanmax(y_log) == np.log10(now.counts.max())


def test_value_grid_shapes_like_print():
    array, rows, _note, _columns = grid_of(torch.arange(12.0).reshape(3, 4))
    assert array.shape == (3, 4) and rows == ["0", "1", "2"]
    array, rows, note, _columns = grid_of(torch.arange(3.0))
    assert array.shape == (1, 3)
    array, rows, note, _columns = grid_of(torch.zeros(2, 3, 4, dtype=torch.bfloat16))
    assert array.shape == (6, 4) and rows[1] == "[0, 1, :]" and "2-D" in note
    array, rows, note, columns = grid_of(torch.arange(float(MAX_ELEMENTS + 1)))  # as print() summarizes it
    assert array.shape == (1, 7) and columns == ["0", "1", "2", "…", "4094", "4095", "4096"]
    assert list(array[0]) == [0.0, 1.0, 2.0, "…", 4094.0, 4095.0, 4096.0] and "first and last 3" in note
    array, _rows, note, _columns = grid_of(torch.empty(3, 3, device="meta"))
    assert array is None and note.startswith("no data")
    array, _rows, note, _columns = grid_of(torch.nn.LazyLinear(3).weight)
    assert array is None and note.startswith("no data")


def test_many_histogram_updates_keep_the_process_alive(tmp_path):
    """Regression: PySide6 6.12.0 on Python 3.11 aborted (none_dealloc) after a few hundred updates."""
    script = tmp_path / "updates.py"
    script.write_text(
        textwrap.dedent(
            """
            import os
            os.environ["QT_QPA_PLATFORM"] = "offscreen"
            import numpy as np
            import torch
            from PySide6.QtWidgets import QApplication
            from paramscope.core.model.tensor_stats import Histogram, tensor_histogram
            from paramscope.gui.plots.histogram_view import HistogramView

            app = QApplication([])
            view = HistogramView()
            view.show()
            rng = np.random.default_rng(0)
            previous = None
            for i in range(3200):
                values = torch.from_numpy(rng.normal(size=200) * (1 + i % 7))
                current = tensor_histogram(values, bins=32)
                view.set_histograms(current, previous, None, title=f"update {i}")
                if i % 50 == 0:
                    view.log_y.setChecked(not view.log_y.isChecked())
                    app.processEvents()
                previous = current
            print("alive", i + 1)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "alive 3200" in done.stdout


def test_gradient_histogram_of_a_large_tensor_is_computed_off_the_gui_thread(qtbot) -> None:
    import torch
    from torch import nn

    from paramscope.core.edit.session import Session
    from paramscope.core.sources.sources import OpenedModel
    from paramscope.gui.panels import histogram_panel as panel_module
    from paramscope.gui.panels.histogram_panel import GRADIENT, HistogramPanel
    from paramscope.gui.state import AppState

    net = nn.Linear(1200, 1000)  # 1.2M weights: over the synchronous limit
    net.weight.grad = torch.ones_like(net.weight)
    state = AppState(Session(OpenedModel(net, "live", "live")))
    panel = HistogramPanel(state)
    qtbot.addWidget(panel)
    panel.set_mode(GRADIENT)
    assert net.weight.numel() > panel_module.SYNC_SUMMARY_LIMIT
    with qtbot.waitSignal(panel.worker.finished, timeout=30_000):
        state.select_tensor("weight")
    assert panel._grad_cache["weight"].stats.mean == 1.0
    panel.cancel_and_wait()


def test_nan_counts_stay_readable_in_the_dark_theme(qtbot):
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication

    from paramscope.gui.theme import apply_theme

    app = QApplication.instance()
    view = HistogramView()
    qtbot.addWidget(view)
    values = torch.tensor([0.0, 1.0, float("nan")])
    try:
        apply_theme(app, "dark")
        view.set_histograms(tensor_histogram(values, bins=2), title="t")
        dark_text = view.nonfinite_label.text()
        background = app.palette().color(app.palette().ColorRole.Window)
        colour = QColor(dark_text.split("color:")[1].split("'")[0])
        assert colour.lightness() - background.lightness() > 90  # not dark red on near-black
        apply_theme(app, "light")
        view.set_histograms(tensor_histogram(values, bins=2), title="t")
        assert QColor(view.nonfinite_label.text().split("color:")[1].split("'")[0]).lightness() < 128
    finally:
        apply_theme(app, "system")



def _colored(view: HistogramView, x: float, count: float) -> int:
    """How many pixels within 3 of the point (x, count) of the plot (x in its drawn units) show
    a colour: bars and their outline (background and grid lines are grey)."""
    scene = view.plot.getViewBox().mapViewToScene(QPointF(x, count))
    center = view.plot_widget.mapFromScene(scene)
    image = view.plot_widget.grab().toImage()
    colors = [image.pixelColor(center.x() + dx, center.y() + dy) for dx in range(-3, 4) for dy in range(-3, 4)]
    return sum(c.red() != c.green() or c.green() != c.blue() for c in colors)


@pytest.mark.parametrize("magnitude", [1.0, 1e200, 1e307, 5.9e307, 1e-320])
def test_bars_of_values_past_1e150_are_drawn_like_any_others(qtbot, magnitude: float) -> None:
    """Qt's path arithmetic squares data coordinates: from ~1e150 on the fill of the first bar
    ran diagonally to the origin over empty bins; past ~9e307 the view's range overflowed and cut
    the bars off, and the axis raised in every paint, as it did for subnormal values."""
    view = HistogramView()
    qtbot.addWidget(view)
    view.resize(500, 350)
    view.show()
    counts = np.zeros(32, dtype=np.int64)
    counts[[0, 10, 31]] = [1, 2, 3]
    view.set_histograms(Histogram(np.linspace(-3, 3, 33) * magnitude, counts), title="w")
    qtbot.waitExposed(view)
    low, high = view.x_range()
    assert low <= -3 * magnitude and high >= 3 * magnitude  # every bar in view
    top = 3 * magnitude  # drawn in units of its power of ten when past 1e100 or below 1e-100
    unit = 1.0 if 1e-100 <= top <= 1e100 else 10.0 ** math.floor(math.log10(top))
    axis = view.plot.getAxis("bottom")
    assert (axis.labelText, axis.label.isVisible()) == (("", False) if unit == 1 else (f"(× {unit:.0e})", True))
    assert _colored(view, -2.9 * magnitude / unit, 0.5) == 49  # inside the first bar
    assert _colored(view, -1.5 * magnitude / unit, 0.5) == 0  # above empty bins
    assert _colored(view, 1.5 * magnitude / unit, 0.5) == 0


def _count_labels(view: HistogramView) -> list[str]:
    return [text for _rect, text in drawn_labels(view.plot.getAxis("left"))]


def test_counts_are_labelled_in_whole_numbers_and_powers_of_ten(qtbot):
    view = HistogramView()
    qtbot.addWidget(view)
    view.resize(500, 400)
    view.show()
    view.set_histograms(tensor_histogram(torch.ones(3), bins=4), title="three ones")  # pyqtgraph: 0.5, 1, 1.5, ...
    qtbot.wait(20)
    labels = _count_labels(view)
    assert labels and all(text.isdigit() for text in labels), labels
    view.log_y.setChecked(True)
    view.set_histograms(tensor_histogram(torch.randn(100_000, generator=torch.Generator().manual_seed(0)), bins=64))
    qtbot.wait(20)
    logged = _count_labels(view)
    assert "1" in logged and any("10" in text for text in logged), logged


def test_a_long_title_keeps_the_plot_within_its_room(qtbot):
    """pyqtgraph makes a plot as wide as its title: a long tensor name pushed the right side of the
    bars and the axis out of view."""
    view = HistogramView()
    qtbot.addWidget(view)
    view.resize(420, 300)
    view.show()
    name = "Transformer.encoderblock_0.MlpBlock_3.Dense_0.bias_of_a_very_long_layer_name_indeed"
    view.set_histograms(tensor_histogram(torch.randn(100), bins=8), title=name)
    qtbot.wait(20)
    widget = view.plot_widget
    assert view.plot.sceneBoundingRect().right() <= widget.viewport().width() + 1
    shown = view.plot.titleLabel.text
    assert "…" in shown and shown.startswith("Transformer") and widget.toolTip() == name
    view.resize(1400, 300)  # room again: the whole name
    qtbot.wait(20)
    assert view.plot.titleLabel.text == name


def test_an_empty_signal_plot_counts_layers_in_whole_numbers(qtbot):
    from paramscope.gui.plots.signal_plot import SignalPlot

    plot = SignalPlot()
    qtbot.addWidget(plot)
    plot.resize(500, 300)
    plot.show()
    qtbot.wait(20)
    labels = [text for _rect, text in drawn_labels(plot.plot.getAxis("bottom"))]
    assert all(text.isdigit() for text in labels), labels  # pyqtgraph: layers 0.1, 0.2, ... 0.9
