"""Show > Dequantized: the histogram of a float8 checkpoint's weights, not of its codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.core.edit.session import Session
from paramscope.core.files import regions
from paramscope.core.sources.sources import open_source
from paramscope.gui.panels import histogram_panel as panel_module
from paramscope.gui.panels.histogram_panel import DEQUANTIZED, VALUES, HistogramPanel
from paramscope.gui.state import AppState

WEIGHT = torch.randn(300, 200, generator=torch.Generator().manual_seed(0)) * 0.02


def _fp8_file(tmp_path: Path) -> Path:
    """A DeepSeek-V3-style layer: float8 codes, one scale per 128x128 block, a float32 bias."""
    scale = torch.zeros(3, 2)
    codes = torch.empty(300, 200, dtype=torch.float8_e4m3fn)
    for i in range(3):
        for j in range(2):
            part = WEIGHT[i * 128 : (i + 1) * 128, j * 128 : (j + 1) * 128]
            scale[i, j] = part.abs().max() / 448
            codes[i * 128 : (i + 1) * 128, j * 128 : (j + 1) * 128] = (part / scale[i, j]).to(torch.float8_e4m3fn)
    path = tmp_path / "model.safetensors"
    save_file({"proj.weight": codes, "proj.weight_scale_inv": scale, "proj.bias": torch.zeros(300)}, str(path))
    return path


def _panel(qtbot, session: Session) -> tuple[HistogramPanel, AppState]:
    state = AppState(session)
    panel = HistogramPanel(state)
    qtbot.addWidget(panel)
    return panel, state


def test_the_weights_not_the_codes(qtbot, tmp_path: Path) -> None:
    panel, state = _panel(qtbot, Session(open_source(str(_fp8_file(tmp_path)))))
    state.select_tensor("proj.weight")
    low, high = panel.view.x_range()
    assert high > 300  # the codes reach ±448
    assert panel.view.fitted_title.text == "proj.weight (float8 codes)"
    panel.set_mode(DEQUANTIZED)
    edges = panel.view.current.edges
    assert edges[0] == pytest.approx(float(WEIGHT.min()), rel=0.04) and edges[-1] == pytest.approx(float(WEIGHT.max()), rel=0.04)
    assert panel.view.current.counts.sum() == WEIGHT.numel()
    assert panel.view.fitted_title.text == "proj.weight × weight_scale_inv (dequantized)"
    state.select_tensor("proj.bias")  # float32: nothing to dequantize, and it says so
    assert panel.view.current is None
    assert panel.view.message.text() == (
        "proj.bias: float32, stored as used (Dequantized is for float8 codes or MXFP4 blocks stored with their scales)"
    )
    panel.set_mode(VALUES)
    assert panel.view.fitted_title.text == "proj.bias"


def test_a_lazily_opened_checkpoint_is_dequantized_off_the_gui_thread(qtbot, tmp_path: Path, monkeypatch) -> None:
    """DeepSeek-V3 is 700 GB and opens lazily: the codes and scales are read in the worker, and
    not kept (the model stays as light as it opened)."""
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)  # as a file of many gigabytes opens
    session = Session(open_source(str(_fp8_file(tmp_path))))
    panel, state = _panel(qtbot, session)
    panel.set_mode(DEQUANTIZED)
    with qtbot.waitSignal(panel.worker.finished, timeout=30_000):
        state.select_tensor("proj.weight")
        assert "computing the dequantized weights" in panel.view.message.text()
    assert panel.view.current.counts.sum() == WEIGHT.numel()
    assert panel.view.current.edges[-1] == pytest.approx(float(WEIGHT.max()), rel=0.04)
    assert session.tensor("proj.weight").device.type == "meta"  # read, not kept
    assert session.tensor("proj.weight_scale_inv").device.type == "meta"
    panel.cancel_and_wait()


def test_large_weights_are_dequantized_in_the_worker(qtbot, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(panel_module, "SYNC_SUMMARY_LIMIT", 1000)
    panel, state = _panel(qtbot, Session(open_source(str(_fp8_file(tmp_path)))))
    panel.set_mode(DEQUANTIZED)
    with qtbot.waitSignal(panel.worker.finished, timeout=30_000):
        state.select_tensor("proj.weight")
    assert panel.view.current.edges[0] == pytest.approx(float(WEIGHT.min()), rel=0.04)
    panel.cancel_and_wait()


def test_gpt_oss_mxfp4_experts(qtbot, tmp_path: Path) -> None:
    """gpt-oss stores its experts as MXFP4: uint8 bytes of two 4-bit floats, whose histogram
    says nothing; Dequantized draws the weights."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (4, 8, 2, 32), generator=generator)
    exponents = torch.full((4, 8, 2), -6)
    table = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])
    weights = table[codes] / 64  # 2 ** -6
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    path = tmp_path / "model.safetensors"
    save_file({"mlp.experts.down_proj_blocks": blocks, "mlp.experts.down_proj_scales": (exponents + 127).to(torch.uint8)}, str(path))
    panel, state = _panel(qtbot, Session(open_source(str(path))))
    state.select_tensor("mlp.experts.down_proj_blocks")
    assert panel.view.fitted_title.text == "mlp.experts.down_proj_blocks (MXFP4 blocks)"
    assert panel.view.current.edges[-1] > 100  # bytes, up to 255
    panel.set_mode(DEQUANTIZED)
    assert panel.view.current.edges[0] == pytest.approx(float(weights.min())) and panel.view.current.edges[-1] == pytest.approx(float(weights.max()))
    assert panel.view.current.counts.sum() == weights.numel()
    assert panel.view.fitted_title.text == "mlp.experts.down_proj_blocks × down_proj_scales (dequantized)"


def test_heatmap_and_spectrum_draw_the_weights(window, qtbot, tmp_path: Path) -> None:
    """The heatmap of float8 codes showed the scales' 128x128 blocks, and the spectrum was of the
    codes; MXFP4 bytes had neither ("uint8: not floating-point")."""
    import numpy as np

    from paramscope.core.model.dequantize import dequantize

    with qtbot.waitSignal(window.opener.opened, timeout=30_000):
        window.open_source(str(_fp8_file(tmp_path)))
    session = window.state.session
    expected = dequantize(session.tensor("proj.weight"), session.tensor("proj.weight_scale_inv")).detach()
    window.state.select_tensor("proj.weight")  # (opening selected it: the largest)
    with qtbot.waitSignal(window.heatmap_view.shown, timeout=30_000):
        window.tabs.setCurrentWidget(window.heatmap_view)
    assert window.heatmap_view.title == "proj.weight [300, 200], dequantized"
    assert np.allclose(window.heatmap_view.array, expected.double().numpy())
    with qtbot.waitSignal(window.spectrum_view.computed, timeout=60_000) as computed:
        window.tabs.setCurrentWidget(window.spectrum_view)
    assert np.allclose(computed.args[0].singular_values, torch.linalg.svdvals(expected.double()).numpy(), rtol=1e-10)
    assert window.spectrum_view.message.text().endswith("\nof the weights, dequantized: the stored codes times their block's scale")

    codes = torch.randint(0, 16, (2, 8, 2, 32), generator=torch.Generator().manual_seed(0))
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    path = tmp_path / "gpt-oss.safetensors"
    save_file({"experts.down_proj_blocks": blocks, "experts.down_proj_scales": torch.full((2, 8, 2), 120, dtype=torch.uint8)}, str(path))
    with qtbot.waitSignal(window.opener.opened, timeout=30_000):
        window.open_source(str(path))
    session = window.state.session
    expected = dequantize(session.tensor("experts.down_proj_blocks"), session.tensor("experts.down_proj_scales")).detach()
    with qtbot.waitSignal(window.spectrum_view.computed, timeout=60_000) as computed:
        window.state.select_tensor("experts.down_proj_blocks")
    assert np.allclose(computed.args[0].singular_values, torch.linalg.svdvals(expected.flatten(1).double()).numpy(), rtol=1e-10)


def test_the_table_says_a_quantized_rows_statistics_are_of_the_codes(window, qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import Qt

    from paramscope.gui.models.param_table import COL_STD, NAME_ROLE

    with qtbot.waitSignal(window.opener.opened, timeout=30_000):
        window.open_source(str(_fp8_file(tmp_path)))
    model = window.param_panel.proxy
    rows = {model.index(r, 0).data(NAME_ROLE): r for r in range(model.rowCount())}
    tip = model.index(rows["proj.weight"], COL_STD).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.endswith(
        "stored quantized (float8 codes), scaled by proj.weight_scale_inv: these statistics are of what is "
        "stored; Histogram > Show > Dequantized draws the weights"
    )
    assert "quantized" not in model.index(rows["proj.bias"], COL_STD).data(Qt.ItemDataRole.ToolTipRole)
