"""The Heatmap tab: 2-D weights in a diverging map centred at 0, large ones block-reduced."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtGui import QImage, QPainter

from paramscope.gui.plots.heatmap_view import MAX_DISPLAY, block_maxabs


def test_heatmap_shows_the_selected_weight_with_symmetric_levels(open_demo):
    window = open_demo("mlp")
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("0.weight")
    view = window.heatmap_view
    weight = window.state.session.tensor("0.weight").detach().double().numpy()
    assert view.array is not None and view.array.shape == (3, 4)
    np.testing.assert_array_equal(view.array, weight)
    low, high = view.color_bar.levels()
    assert low == -high and high == np.abs(weight).max()  # white is exactly 0
    assert "0.weight" in view.title and "downsampled" not in view.title


def test_heatmap_follows_edits_and_explains_1d(open_demo):
    window = open_demo("mlp")
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("0.bias")
    assert window.heatmap_view.array is None
    assert "needs 2 or more dimensions" in window.heatmap_view.message.text()
    window.state.select_tensor("2.weight")
    from paramscope.core.edit.commands import TensorEditCommand

    weight = window.state.session.tensor("2.weight")
    window.state.execute(TensorEditCommand("fill", [("2.weight", weight)], lambda: weight.data.fill_(2.0)))
    assert (window.heatmap_view.array == 2.0).all()


def test_heatmap_of_conv_weight_flattens_to_rows(open_demo):
    window = open_demo("cnn")
    window.tabs.setCurrentWidget(window.heatmap_view)
    name = next(n for n, t in window.state.session.report.parameters.items() if len(t.shape) == 4)
    window.state.select_tensor(name)
    shape = window.state.session.report.parameters[name].shape
    assert window.heatmap_view.array.shape == (shape[0], int(np.prod(shape[1:])))
    assert "flattened" in window.heatmap_view.title


def test_block_maxabs_keeps_the_outlier_and_its_sign():
    matrix = torch.zeros(2 * MAX_DISPLAY + 3, 10)
    matrix[700, 3] = -9.0
    matrix[5, 5] = float("nan")  # drawn as 0, not as a colour
    array, k = block_maxabs(matrix)
    assert k == 3 and array.shape == (math_ceil(matrix.shape[0], 3), math_ceil(10, 3))
    assert array.min() == -9.0 and array[700 // 3, 3 // 3] == -9.0
    assert np.isfinite(array).all()


def test_large_weight_title_says_downsampled(qtbot):
    from torch import nn

    from paramscope.core.edit.session import Session
    from paramscope.core.sources.sources import OpenedModel
    from paramscope.gui.plots.heatmap_view import HeatmapView
    from paramscope.gui.state import AppState

    model = nn.Linear(1500, 40)
    state = AppState(Session(OpenedModel(model, "big", "live")))
    view = HeatmapView(state)
    qtbot.addWidget(view)
    view.show()
    state.select_tensor("weight")
    assert view.factor == 3 and "downsampled 3×" in view.title
    assert view.array.shape == (14, 500)


def math_ceil(a: int, b: int) -> int:
    return -(-a // b)


def test_a_weight_past_float32s_range_is_finite_and_labelled_with_its_values(window):
    """float64 values past 3.4e38 were counted as NaN/Inf ("drawn as 0") and the colour bar past
    ~1e150 showed only the label 0."""
    from torch import nn

    from paramscope.core.sources.sources import OpenedModel

    net = nn.Linear(8, 6, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.linspace(-3e300, 3e300, 48, dtype=torch.float64).reshape(6, 8))
    window.open_model(OpenedModel(net, "huge", "live"))
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("weight")
    view = window.heatmap_view
    np.testing.assert_array_equal(view.array, net.weight.detach().numpy())
    assert not view.message.isVisible()  # no "NaN/Inf values drawn as 0"
    low, high = view.color_bar.levels()
    assert low == -high and high * 1e300 == pytest.approx(3e300, rel=1e-15)
    assert view.color_bar.getAxis("left").labelText == "value (× 1e+300)"
    assert _drawn_labels(view) == ["-2", "0", "2", "-3", "-1", "1", "3"]


@pytest.mark.parametrize("magnitude", [0.4, 3e5, 3e30])
def test_the_colour_bar_labels_every_major_tick(window, magnitude: float):
    """Labels wider than the bar were dropped: ±3e30 had only "0", ±3e5 no negative label."""
    from torch import nn

    from paramscope.core.sources.sources import OpenedModel

    net = nn.Linear(8, 6, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.linspace(-magnitude, magnitude, 48).reshape(6, 8))
    window.open_model(OpenedModel(net, "m", "live"))
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("weight")
    labels = _drawn_labels(window.heatmap_view)
    assert "0" in labels and any(text.startswith("-") for text in labels) and len(labels) >= 5


def _drawn_labels(view) -> list[str]:
    """The tick labels the colour bar draws (pyqtgraph leaves out those that do not fit)."""
    image = QImage(100, 400, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        return [text for _rect, _flags, text in view.color_bar.axis.generateDrawSpecs(painter)[2]]
    finally:
        painter.end()


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (2, 0, 4)])
def test_a_weight_without_elements_says_so_instead_of_crashing(window, shape):
    """``reshape(rows, -1)`` of no elements raised inside the tab's paint: the process died (SIGSEGV)."""
    from torch import nn

    from paramscope.core.sources.sources import OpenedModel

    net = nn.Module()
    net.weight = nn.Parameter(torch.zeros(shape))
    window.open_model(OpenedModel(net, "empty", "live"))
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("weight")
    assert window.heatmap_view.array is None
    assert window.heatmap_view.message.text() == f"weight has shape {list(shape)}: no values to draw."


def test_a_sparse_buffer_says_so_and_a_failing_refresh_shows_its_message(window, monkeypatch):
    """A sparse buffer's heatmap raised inside the tab's showEvent (reshape of a sparse tensor) and
    the process died (SIGSEGV); any refresh that raises now shows a one-line message."""
    from torch import nn

    import paramscope.gui.plots.heatmap_view as heatmap_module
    from paramscope.core.sources.sources import OpenedModel

    net = nn.Linear(3, 2)
    net.register_buffer("mask", torch.eye(3).to_sparse())
    window.open_model(OpenedModel(net, "sparse", "live"))
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("mask")
    assert window.heatmap_view.message.text() == "mask: a sparse_coo tensor; the heatmap draws dense ones."

    def broken(*_args, **_kwargs):
        raise RuntimeError("a view's bug\nwith a second line")

    monkeypatch.setattr(heatmap_module, "heatmap_of", broken)
    window.tabs.setCurrentWidget(window.histogram_panel)
    window.state.select_tensor("weight")
    window.tabs.setCurrentWidget(window.heatmap_view)  # shown: refreshes, and the refresh raises
    assert window.heatmap_view.message.text() == "weight: RuntimeError: a view's bug with a second line"
    assert window.heatmap_view.array is None


def test_a_long_name_leaves_room_for_the_colour_bar(window, qtbot):
    """The title was as wide as the tensor's name, and pyqtgraph made the plot at least that wide:
    the colour bar, the only key to the colours, was squeezed to a line."""
    from torch import nn

    from paramscope.core.sources.sources import OpenedModel

    net = nn.Module()
    net.add_module("transformer_encoderblock_0_mlp_block_3_dense_0", nn.Sequential(nn.Linear(256, 64)))
    window.open_model(OpenedModel(net, "long", "live"))
    window.resize(1280, 800)
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("transformer_encoderblock_0_mlp_block_3_dense_0.0.weight")
    qtbot.wait(50)
    view = window.heatmap_view
    assert view.array is not None
    assert view.color_bar.sceneBoundingRect().width() > 40
    assert view.plot.sceneBoundingRect().right() <= view.plot_widget.viewport().width() + 1
    assert view.plot_widget.toolTip() == view.title  # the whole title where the plot shows it elided
