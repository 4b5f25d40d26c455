"""The Heatmap tab: 2-D weights in a diverging map centred at 0, large ones block-reduced."""

from __future__ import annotations

import numpy as np
import torch

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
