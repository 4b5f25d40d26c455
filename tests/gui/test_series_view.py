"""The Series view in the window: File > Open series…, the table, the heat strip, the histograms, cancel.

The run is real: a small MLP trained with SGD for four steps, its middle layer frozen, a NaN
written into the first weight at the third checkpoint; numbers are checked against plain torch.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox
from safetensors.torch import save_file
from torch import nn

from paramscope.gui.models.series_model import COLUMNS, VALUE_ROLE
from paramscope.gui.panels.series_view import MODULES
from paramscope.gui.plots import heat_strip

STEPS = (5, 10, 50, 100)  # text order differs from step order: step-10, step-100, step-5, step-50
NAN_STEP = 2  # index: the third checkpoint holds a NaN in 0.weight
COLUMN = {key: i for i, (_, key, _) in enumerate(COLUMNS) if key}


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, list[dict[str, torch.Tensor]]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    for p in model[2].parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    saved = []
    for i, step in enumerate(STEPS):
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tensors = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if i == NAN_STEP:
            tensors["0.weight"][1, 2] = float("nan")
        save_file(tensors, str(tmp_path / f"step-{step}.safetensors"))
        saved.append(tensors)
    return tmp_path, saved


def open_through_menu(window, qtbot, text: str):
    """File > Open series…, type ``text``, press Open; returns the view once the series is shown."""
    view = window.series_view
    window.open_series_action.trigger()
    dialog = view.dialog
    assert dialog is not None and dialog.isVisible()
    dialog.line.setText(text + "-nothing-*")
    assert not dialog.open_button.isEnabled() and "matches no file" in dialog.preview.text()
    dialog.line.setText(text)
    assert dialog.open_button.isEnabled(), dialog.preview.text()
    with qtbot.waitSignal(view.seriesReady, timeout=60_000):
        qtbot.mouseClick(dialog.buttons.button(QDialogButtonBox.StandardButton.Open), Qt.MouseButton.LeftButton)
    assert window.series_dock.isVisible()
    return view


def finite(t: torch.Tensor) -> torch.Tensor:
    flat = t.double().reshape(-1)
    return flat[torch.isfinite(flat)]


def table_value(view, name: str, step: int, key: str):
    model = view.model
    row = [r.name for r in model.rows].index(name)
    return model.index(model.table_row(row, step), COLUMN[key]).data(VALUE_ROLE)


def test_table_numbers_equal_torch(window, qtbot, run, settings_file):
    folder, saved = run
    view = open_through_menu(window, qtbot, str(folder / "step-*.safetensors"))
    assert view.series.steps == list(STEPS)
    assert view.model.rowCount() == len(saved[0]) * len(STEPS)
    for name in saved[0]:
        for i, tensors in enumerate(saved):
            t = finite(tensors[name])
            assert table_value(view, name, i, "norm") == pytest.approx(float(t.norm()), rel=1e-12)
            assert table_value(view, name, i, "std") == pytest.approx(float(t.std()), rel=1e-9)
            assert table_value(view, name, i, "max_abs") == pytest.approx(float(t.abs().max()), rel=1e-12)
            assert table_value(view, name, i, "nan") == int(torch.isnan(tensors[name]).sum())
            rel_prev = table_value(view, name, i, "rel_prev")
            if i == 0:
                assert rel_prev is None
                continue
            prev, now, first = saved[i - 1][name].double(), tensors[name].double(), saved[0][name].double()
            expected = float((now - prev).norm() / prev.norm())
            if math.isnan(expected):
                assert math.isnan(rel_prev), (name, i)
            else:
                assert rel_prev == pytest.approx(expected, rel=1e-9, abs=0), (name, i)
            expected_first = float((now - first).norm() / first.norm())
            assert table_value(view, name, i, "rel_first") == pytest.approx(expected_first, rel=1e-9, nan_ok=True)
    assert table_value(view, "2.weight", 3, "rel_prev") == 0.0  # frozen
    view.set_mode(MODULES)
    both = torch.cat([saved[1]["4.weight"].reshape(-1), saved[1]["4.bias"]]).double()
    assert table_value(view, "4", 1, "norm") == pytest.approx(float(both.norm()), rel=1e-12)


def test_heat_strip_cells_and_nan_marks(window, qtbot, run, settings_file):
    folder, saved = run
    view = open_through_menu(window, qtbot, str(folder))  # a run's folder: the same series
    strip = view.strip
    names = strip.data.names
    w0, w2 = names.index("0.weight"), names.index("2.weight")
    # the only NaN/Inf anywhere: 0.weight at the third step, crossed whatever the metric
    assert [tuple(c) for c in np.argwhere(strip.data.nonfinite)] == [(w0, NAN_STEP)]
    xs, ys = strip.cross.getData()
    assert sorted(set(np.floor(xs).astype(int))) == [NAN_STEP] and sorted(set(np.floor(ys).astype(int))) == [w0]
    rgba = strip.rgba
    assert (rgba[:, 0, 3] == 0).all()  # no change at the first step: empty cells
    assert [tuple(rgba[w2, c]) for c in (1, 2, 3)] == [heat_strip.ZERO_COLOR.getRgb()] * 3  # frozen: grey
    assert tuple(rgba[w0, NAN_STEP]) == heat_strip.UNDEFINED_COLOR.getRgb()  # a change to a NaN is undefined
    w_a, w_b = saved[0]["0.weight"].double(), saved[1]["0.weight"].double()
    expected = float((w_b - w_a).norm() / w_a.norm())
    assert strip.data.values[w0, 1] == pytest.approx(expected, rel=1e-12)
    assert f"{expected:.6g}" in strip.tooltip_text(w0, 1)
    view.set_metric("norm")
    assert strip.data.values[w2, 0] == pytest.approx(float(saved[0]["2.weight"].double().norm()), rel=1e-12)
    assert rgba is not strip.rgba and strip.rgba[w2, 0, 3] == 255
    assert [tuple(c) for c in np.argwhere(strip.data.nonfinite)] == [(w0, NAN_STEP)]
    header, rows = strip.grid_csv()
    assert header == ["name", *(f"step {s}" for s in STEPS)]
    assert float(rows[w2][1]) == strip.data.values[w2, 0]


@pytest.mark.parametrize(("name", "step"), [("4.weight", 1), ("0.weight", NAN_STEP)])
def test_click_a_cell_draws_both_steps(window, qtbot, run, settings_file, name, step):
    folder, saved = run
    view = open_through_menu(window, qtbot, str(folder / "step-*.safetensors"))
    strip = view.strip
    row = strip.data.names.index(name)
    with qtbot.waitSignal(view.histogramsReady, timeout=30_000):
        qtbot.mouseClick(strip.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=strip.cell_center(row, step).toPoint())
    assert strip.selected == (row, step)
    before, now = saved[step - 1][name], saved[step][name]
    both = torch.cat([finite(before), finite(now)])
    lo, hi = float(both.min()), float(both.max())
    shown = view.histogram
    assert shown.current.counts.tolist() == torch.histc(finite(now), 64, lo, hi).long().tolist()
    assert shown.previous.counts.tolist() == torch.histc(finite(before), 64, lo, hi).long().tolist()
    assert shown.current.nan == int(torch.isnan(now).sum()) and shown.previous.nan == 0
    assert shown.labels == (f"step {STEPS[step]}", f"step {STEPS[step - 1]}")
    assert shown.previous_item.isVisible() and shown.current_item.isVisible()
    selected = view.table.selectionModel().currentIndex()  # the table follows the strip
    assert view.model.cell(view.proxy.mapToSource(selected).row()) == (row, step)


def test_cancel_stops_the_work(window, qtbot, run, settings_file, monkeypatch):
    folder, _ = run
    view = window.series_view
    entered, release = threading.Event(), threading.Event()
    opened: list[str] = []
    from paramscope.gui.panels import series_view

    real = series_view.open_checkpoint

    def slow_open(source: str, trust: bool):
        opened.append(source)
        entered.set()
        release.wait(30)
        return real(source, trust)

    monkeypatch.setattr(series_view, "open_checkpoint", slow_open)
    view.open_series([str(folder / "step-*.safetensors")])
    qtbot.waitUntil(entered.is_set)
    assert view.cancel_button.isVisible()
    with qtbot.waitSignal(view.worker.cancelled):
        qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    release.set()
    assert view.worker.wait()
    qtbot.wait(0)  # the finished thread's queued signals, dropped as stale
    assert opened == [str(folder / "step-5.safetensors")]  # stopped before the second checkpoint
    assert view.series is None and view.model.rowCount() == 0
    assert not view.cancel_button.isVisible() and not view.progress_bar.isVisible()


def test_exports(window, qtbot, run, settings_file, tmp_path):
    folder, _ = run
    view = open_through_menu(window, qtbot, str(folder / "step-*.safetensors"))
    out = tmp_path / "out"
    out.mkdir()
    assert view.export_strip(out / "strip.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in view.export_strip(out / "strip.svg").read_bytes()
    lines = view.export_strip_csv(out / "strip.csv").read_text().splitlines()
    assert lines[0] == "name,step 5,step 10,step 50,step 100" and len(lines) == 1 + len(view.strip.data.names)
    table = view.export_table_csv(out / "table.csv").read_text().splitlines()
    assert table[0].split(",")[:2] == ["Name", "Step"] and len(table) == 1 + view.model.rowCount()


def test_several_sources_on_the_command_line_are_a_series(monkeypatch):
    from paramscope.cli import main

    seen: dict = {}
    monkeypatch.setattr("paramscope.gui.app.launch.launch", lambda source, **kw: seen.update(source=source, **kw) or 0)
    assert main(["a.safetensors", "b.safetensors"]) == 0 and seen["series"] == ["a.safetensors", "b.safetensors"]
    assert main(["--series", "ckpts/step-*.pt"]) == 0 and seen["series"] == ["ckpts/step-*.pt"]
    assert main(["one.pt"]) == 0 and seen["series"] is None and seen["source"] == "one.pt"
    assert main([]) == 0 and seen["series"] is None and seen["source"] == "demo:mlp"


def test_a_series_from_the_command_line_opens_its_latest_checkpoint(window, qtbot, run, settings_file):
    folder, saved = run
    view = window.series_view
    with qtbot.waitSignal(window.opened, timeout=60_000):
        view.open_series([str(folder / "step-*.safetensors")], open_latest=True)
    qtbot.waitUntil(lambda: window.state.has_session and not window.opener.is_running, timeout=60_000)
    assert view.series is not None and window.series_dock.isVisible()
    assert Path(window.state.session.opened.source).name == "step-100.safetensors"
    assert torch.equal(window.state.session.values("4.weight"), saved[-1]["4.weight"])


def test_series_plots_follow_the_theme(window, qtbot, qapp, run, settings_file):
    from PySide6.QtGui import QPalette

    from paramscope.gui import palette, theme

    folder, _ = run
    view = open_through_menu(window, qtbot, str(folder / "step-*.safetensors"))
    palette.follow_system(qapp)
    try:
        for name in ("dark", "light"):
            theme.apply_theme(qapp, name)
            base = qapp.palette().color(QPalette.ColorRole.Base)
            for plot_widget in (view.strip.plot_widget, view.histogram.plot_widget):
                assert plot_widget.backgroundBrush().color() == base, name
            text = qapp.palette().color(QPalette.ColorRole.Text)
            assert view.strip.plot.getAxis("left").textPen().color() == text
    finally:
        theme.apply_theme(qapp, "system")


def test_a_folder_of_dcp_checkpoints(window, qtbot, tmp_path, settings_file):
    import warnings

    import torch.distributed.checkpoint as dcp

    weights = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no process group: torch says it saves from one process
        for step, weight in zip((100, 200, 300), weights, strict=True):
            dcp.save({"fc.weight": weight, "fc.bias": torch.zeros(3)}, checkpoint_id=str(tmp_path / f"checkpoint-{step}"))
    view = open_through_menu(window, qtbot, str(tmp_path))
    assert view.series.steps == [100, 200, 300]
    expected = float((weights[2].double() - weights[1].double()).norm() / weights[1].double().norm())
    assert table_value(view, "fc.weight", 2, "rel_prev") == pytest.approx(expected, rel=1e-12)
    assert table_value(view, "fc.bias", 2, "rel_prev") == 0.0  # zeros to zeros: unchanged
    row = view.strip.data.names.index("fc.weight")
    with qtbot.waitSignal(view.histogramsReady, timeout=30_000):
        qtbot.mouseClick(view.strip.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=view.strip.cell_center(row, 2).toPoint())
    both = torch.cat([weights[1].reshape(-1), weights[2].reshape(-1)]).double()
    lo, hi = float(both.min()), float(both.max())
    assert view.histogram.current.counts.tolist() == torch.histc(weights[2].double(), 64, lo, hi).long().tolist()
