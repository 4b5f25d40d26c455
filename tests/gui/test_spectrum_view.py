"""The Spectrum tab through the window: singular values against torch, the Marchenko–Pastur overlay,
the worker with Cancel for large matrices, and what has no spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from plot_labels import drawn_labels
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from torch import nn

from paramscope.core.model import spectra
from paramscope.core.sources.sources import OpenedModel
from paramscope.gui.plots import spectrum_view


def show_spectrum(window, qtbot, name: str):
    """Select ``name`` with the Spectrum tab in front; return the Spectrum shown."""
    view = window.spectrum_view
    window.tabs.setCurrentWidget(window.histogram_panel)  # hidden: selecting computes nothing yet
    window.state.select_tensor(name)
    with qtbot.waitSignal(view.computed, timeout=60_000) as blocker:
        window.tabs.setCurrentWidget(view)
    return blocker.args[0]


def test_conv_weight_flattened_matches_torch(open_demo, qtbot):
    window = open_demo("cnn")
    name = next(n for n, i in window.state.session.report.parameters.items() if i.shape and len(i.shape) == 4)
    weight = window.state.session.tensor(name).detach()
    shown = show_spectrum(window, qtbot, name)
    expected = torch.linalg.svdvals(weight.flatten(1).double())
    assert np.allclose(shown.singular_values, expected.numpy(), rtol=1e-10)
    assert shown.spectral_norm == pytest.approx(float(torch.linalg.matrix_norm(weight.flatten(1).double(), ord=2)))
    fro = float(torch.linalg.matrix_norm(weight.flatten(1).double()))
    assert shown.stable_rank == pytest.approx(fro**2 / float(expected[0]) ** 2)
    assert shown.condition_number == pytest.approx(float(expected[0] / expected[-1]))
    view = window.spectrum_view
    text = view.message.text()
    assert f"{weight.shape[0]} x {math.prod(weight.shape[1:])}" in text and "flattened" in text
    assert f"stable rank {shown.stable_rank:.4g}" in text and f"condition number {shown.condition_number:.4g}" in text
    x, y = view.values_item.xData, view.values_item.yData  # the singular values, largest first
    assert np.allclose(y, expected.numpy()) and list(x[:2]) == [1.0, 2.0]


def test_marchenko_pastur_overlay_fits_a_random_init(window, qtbot):
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(512, 256, bias=False))
    with torch.no_grad():
        nn.init.normal_(net[0].weight, std=0.02, generator=generator)
    window.open_model(OpenedModel(net, "random", "live"))
    shown = show_spectrum(window, qtbot, "0.weight")
    law = shown.marchenko_pastur
    assert law.sigma == pytest.approx(0.02, rel=0.02)
    assert shown.singular_values[0] == pytest.approx(law.high, rel=0.05)  # the edge of the law
    assert shown.singular_values[-1] == pytest.approx(law.low, rel=0.15)
    assert shown.outliers() == 0
    view = window.spectrum_view
    edges, counts = view.bars_item.getData()
    x, density = view.law_item.getData()
    assert counts.sum() == 256 and view.law_item.isVisible()
    width = edges[1] - edges[0]
    assert np.trapezoid(density, x) / width == pytest.approx(256, rel=0.05)  # the curve is in counts
    assert view.edges[0].value() == pytest.approx(math.log10(law.high))
    view.law_box.setChecked(False)
    assert not view.law_item.isVisible() and not view.edges[0].isVisible()


def test_large_matrix_in_the_worker_with_cancel(window, qtbot, monkeypatch, tmp_path):
    monkeypatch.setattr(spectrum_view, "SYNC_COST", 0)
    net = nn.Sequential(nn.Linear(300, 200))
    window.open_model(OpenedModel(net, "large", "live"))
    view = window.spectrum_view
    window.tabs.setCurrentWidget(view)
    window.state.select_tensor("0.weight")
    assert view.worker.is_running and view.progress.isVisible() and view.cancel_button.isVisible()
    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    assert "cancelled" in view.message.text() and view.spectrum is None
    assert view.compute_button.isVisible() and view.compute_button.text() == "Compute"
    assert view.worker.wait()
    qtbot.wait(50)  # the cancelled result, if delivered, must be dropped
    assert view.spectrum is None
    with qtbot.waitSignal(view.computed, timeout=60_000) as blocker:
        qtbot.mouseClick(view.compute_button, Qt.MouseButton.LeftButton)
    assert np.allclose(blocker.args[0].singular_values, torch.linalg.svdvals(net[0].weight.detach().double()).numpy())
    assert not view.progress.isVisible()
    png = window.export_plot(tmp_path / "spectrum.png")  # File > Export plot takes the front plot
    assert png is not None and QImage(str(png)).width() > 100


def test_what_has_no_spectrum_says_why(window, qtbot, monkeypatch):
    net = nn.Sequential(nn.Linear(20, 10))
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    net[0].register_buffer("mask", torch.eye(3).to_sparse())  # raised from the tab's showEvent: SIGSEGV
    window.open_model(OpenedModel(net, "odd", "live"))
    view = window.spectrum_view
    window.tabs.setCurrentWidget(view)
    with qtbot.waitSignal(view.skipped) as blocker:
        window.state.select_tensor("0.bias")
    assert blocker.args[0] == "0.bias: 1-D: not a matrix"
    with qtbot.waitSignal(view.skipped) as blocker:
        window.state.select_tensor("0.mask")
    assert blocker.args[0] == "0.mask: sparse_coo layout: spectra of dense tensors only"
    with qtbot.waitSignal(view.skipped) as blocker:
        window.state.select_tensor("0.weight")
    assert "NaN" in blocker.args[0] and view.spectrum is None
    with torch.no_grad():
        net[0].weight[0, 0] = 0.0
    monkeypatch.setattr(spectra, "MAX_SIDE", 5)  # both sides above it: skipped unless asked
    with qtbot.waitSignal(view.skipped) as blocker:
        window.state.select_tensor("0.bias")
        window.state.select_tensor("0.weight")
    assert "both sides above 5" in view.message.text() and view.compute_button.text() == "Compute anyway"
    with qtbot.waitSignal(view.computed):
        qtbot.mouseClick(view.compute_button, Qt.MouseButton.LeftButton)


def test_zero_weight_has_gaps_not_a_crash(window, qtbot):
    net = nn.Sequential(nn.Linear(6, 4, bias=False))
    nn.init.zeros_(net[0].weight)
    window.open_model(OpenedModel(net, "zeros", "live"))
    shown = show_spectrum(window, qtbot, "0.weight")
    assert shown.spectral_norm == 0 and shown.stable_rank is None and math.isinf(shown.condition_number)
    assert "4 singular value(s) are 0" in window.spectrum_view.message.text()


def test_edits_recompute_only_on_screen(open_demo, qtbot):
    window = open_demo("mlp")
    view = window.spectrum_view
    show_spectrum(window, qtbot, "0.weight")
    window.tabs.setCurrentWidget(window.histogram_panel)
    session = window.state.session
    from paramscope.core.init.rules import apply_rules

    apply_rules(session, ["0.weight=orthogonal"], seed=0)  # an edit while the tab is hidden
    assert view._dirty
    with qtbot.waitSignal(view.computed) as blocker:
        window.tabs.setCurrentWidget(view)
    assert np.allclose(blocker.args[0].singular_values, 1.0)  # orthogonal rows: all ones


def test_a_matrix_of_values_past_1e154_shows_its_numbers_and_bars(window, qtbot):
    """The stable rank raised OverflowError (a traceback instead of the tab) and the bars of
    singular values past 1e150 were drawn astray (see drawn_units)."""
    net = nn.Sequential(nn.Linear(50, 30, bias=False).double())
    with torch.no_grad():
        net[0].weight.normal_(generator=torch.Generator().manual_seed(0)).mul_(1e300)
    window.open_model(OpenedModel(net, "huge", "live"))
    shown = show_spectrum(window, qtbot, "0.weight")
    plain = spectra.spectrum("w", net[0].weight.detach() / 1e300)
    assert shown.frobenius == pytest.approx(plain.frobenius * 1e300, rel=1e-12)
    assert f"stable rank {plain.stable_rank:.4g}" in window.spectrum_view.message.text()
    x, _ = window.spectrum_view.bars_item.getData()  # drawn in a unit named on the axis
    title = window.spectrum_view.histogram_plot.getAxis("bottom").labelText
    assert title in ("singular value (× 1e+300)", "singular value (× 1e+301)")
    unit = float(title.removeprefix("singular value (× ").removesuffix(")"))
    assert float(np.max(x)) * unit == pytest.approx(float(np.max(shown.singular_values)), rel=0.2)


def test_stacked_experts_are_not_read_as_one_matrix(window, qtbot):
    """transformers 5 keeps a mixture of experts in (experts, out, in) tensors: read as one 4 x 18
    matrix they had 4 meaningless singular values; each expert's 6 x 3 matrix has 3."""
    experts = nn.Module()
    experts.is_transposed = False
    experts.gate_up_proj = nn.Parameter(torch.randn(4, 6, 3))
    window.open_model(OpenedModel(nn.Sequential(experts), "moe", "live"))
    view = window.spectrum_view
    window.state.select_tensor("0.gate_up_proj")
    with qtbot.waitSignal(view.computed) as blocker:
        window.tabs.setCurrentWidget(view)
    shown = blocker.args[0]
    expected = torch.linalg.svdvals(experts.gate_up_proj.detach().double())  # 4 x 3, one row per expert
    assert shown.experts == 4 and (shown.rows, shown.cols) == (6, 3)
    np.testing.assert_allclose(shown.singular_values, np.sort(expected.numpy().ravel())[::-1], rtol=1e-12)
    assert shown.spectral_norm == pytest.approx(float(expected.max()))
    assert "4 experts, each 6 x 3 (their singular values pooled" in view.message.text()
    window.tabs.setCurrentWidget(window.heatmap_view)
    qtbot.waitUntil(lambda: window.heatmap_view.array is not None)
    assert window.heatmap_view.array.shape == (24, 3) and "(4 experts, one under another)" in window.heatmap_view.title


def _spectrum_labels(window, qtbot, net: nn.Module) -> list[str]:
    """The labels the singular-value axis draws for ``net``'s ``0.weight``, checked not to overlap."""
    window.open_model(OpenedModel(net, "spread", "live"))
    window.resize(1280, 800)
    show_spectrum(window, qtbot, "0.weight")
    qtbot.wait(50)  # laid out
    left = drawn_labels(window.spectrum_view.plot.getAxis("left"))
    for (a, _), (b, _) in zip(left, left[1:], strict=False):
        assert not a.intersects(b), [text for _, text in left]
    return [text for _, text in left]


def test_axis_labels_do_not_overlap_and_index_and_count_are_whole(window, qtbot):
    net = nn.Sequential(nn.Linear(4, 3, bias=False))
    with torch.no_grad():  # two decades: pyqtgraph labelled 0.02, 0.03, ... 0.09, 0.1, 0.2, ... overlapping
        net[0].weight.copy_(torch.tensor([[0.7, 0.0, 0.0, 0.0], [0.0, 0.4, 0.0, 0.0], [0.0, 0.0, 0.02, 0.0]]))
    assert {"0.02", "0.1", "0.5"} <= set(_spectrum_labels(window, qtbot, net))
    view = window.spectrum_view
    index = [text for _, text in drawn_labels(view.plot.getAxis("bottom"))]
    assert index == ["1", "2", "3"]
    counts = [text for _, text in drawn_labels(view.histogram_plot.getAxis("left"))]
    assert counts and all(text.isdigit() for text in counts), counts


def test_a_spectrum_within_a_decade_has_labelled_steps(window, qtbot):
    net = nn.Sequential(nn.Linear(64, 16384, bias=False))  # singular values (and law) in ~[7.5, 8.5]
    with torch.no_grad():
        nn.init.normal_(net[0].weight, std=0.0625, generator=torch.Generator().manual_seed(0))
    labels = _spectrum_labels(window, qtbot, net)  # pyqtgraph labelled one tick, 8
    assert len(labels) >= 2, labels
    assert all(7.0 <= float(text) <= 9.0 for text in labels), labels
