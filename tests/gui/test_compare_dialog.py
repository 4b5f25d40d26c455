"""Schemes compared on the signal, through the window's widgets, checked against plain torch."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from torch import nn

from paramscope.core.backward.signal import SignalPoint
from paramscope.gui.panels.compare_dialog import PANEL, CompareDialog
from paramscope.gui.panels.init_panel import RULE
from paramscope.gui.plots.signal_plot import SignalPlot, short_name


def plain_signal(model: nn.Module, x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Std of every leaf module's output and of the gradient of ``sum(output)`` at it, in plain torch."""
    outputs: list[torch.Tensor] = []

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        outputs.append(output)

    hooks = [m.register_forward_hook(keep) for m in model.modules() if not list(m.children())]
    grads = {id(p): p.grad for p in model.parameters()}
    try:
        model(x).sum().backward()
    finally:
        for hook in hooks:
            hook.remove()
        for p in model.parameters():
            p.grad = grads[id(p)]
    return [float(o.detach().std()) for o in outputs], [float(o.grad.std()) for o in outputs]


def state_bytes(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def deep(open_demo, tmp_path):
    """deep_mlp in the window, the Initialize panel on ``*.weight=normal_(std=0.01)``, the dialog open."""
    window = open_demo("deep_mlp")
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(RULE))
    panel.rule_edit.setText("*.weight")
    panel.set_initializer("normal_")
    panel.fields["std"].setValue(0.01)
    panel.notes.compare_button.click()
    dialog = window.init_tools.compare_dialog
    assert isinstance(dialog, CompareDialog) and dialog.isVisible()
    x = torch.randn(128, 64, generator=torch.Generator().manual_seed(7))
    path = tmp_path / "x.pt"
    torch.save(x, path)
    dialog.input_edit.setText(str(path))
    return window, dialog, x


def run(qtbot, dialog: CompareDialog):
    with qtbot.waitSignal(dialog.compared, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_each_line_is_what_the_model_does_under_that_scheme(deep, qtbot):
    window, dialog, x = deep
    model = window.state.session.model
    before = state_bytes(model)
    dialog.set_checked(["current", PANEL, "pytorch"])
    comparison = run(qtbot, dialog)

    assert same(state_bytes(model), before) and not window.state.session.stack.history  # nothing changed
    labels = [s.name for s in comparison.schemes]
    assert labels == ["current", "Initialize: normal_(mean=0.0,std=0.01)", "pytorch"]
    activations, gradients = plain_signal(model, x)
    current = comparison.schemes[0].points
    assert np.allclose([p.activation_std for p in current], activations, rtol=1e-5)
    assert np.allclose([p.gradient_std for p in current[:-1]], gradients[:-1], rtol=1e-5)

    # Apply the panel's choice with the comparison's seed: the model now does what its line says.
    window.init_panel.seed_edit.setText(str(comparison.seed))
    with qtbot.waitSignal(window.init_panel.applied):
        qtbot.mouseClick(window.init_panel.apply_button, Qt.MouseButton.LeftButton)
    activations, gradients = plain_signal(model, x)
    panel_points = comparison.schemes[1].points
    assert np.allclose([p.activation_std for p in panel_points], activations, rtol=1e-5)
    assert panel_points[0].activation_std < current[0].activation_std / 3  # std 0.01 vs ~0.07

    # The plot: one activation and one gradient curve per scheme, one legend entry per scheme,
    # the layer names on the axis; the table holds the same numbers.
    data = dialog.signal_plot.scheme_data()
    assert [d[0] for d in data] == labels
    assert all(len(d[1]) == 39 for d in data)
    assert np.allclose(data[1][2], [p.activation_std for p in panel_points])
    curves = dialog.signal_plot.scheme_curves
    assert len(curves) == 6 and len(dialog.signal_plot.scheme_legend.items) == 3
    drawn_activation, drawn_gradient = curves[2].yData, curves[3].yData  # the panel's pair
    assert np.allclose(drawn_activation, activations)
    assert np.allclose(drawn_gradient[:-1], gradients[:-1])  # the last (all ones) has std 0: a gap
    assert curves[2].opts["pen"].style() == Qt.PenStyle.SolidLine and curves[3].opts["pen"].style() == Qt.PenStyle.DashLine
    assert dialog.signal_plot.axis.names[0] == "0" and len(dialog.signal_plot.axis.names) == 39
    assert dialog.table.rowCount() == 39 and dialog.table.columnCount() == 3 + 2 * 3
    assert dialog.table_text(4, 1) == "4" and dialog.table_text(4, 2) == "Linear"
    assert float(dialog.table_text(4, 3)) == pytest.approx(current[4].activation_std, rel=1e-3)
    dialog.signal_plot.only_parametrized.setChecked(True)
    assert all(len(d[1]) == 20 for d in dialog.signal_plot.scheme_data())
    assert "normal_(mean=0.0,std=0.01)" in dialog.details.toPlainText()


def test_exports_png_svg_and_csv(deep, qtbot, tmp_path):
    _window, dialog, _x = deep
    assert not dialog.export_csv_button.isEnabled()  # nothing to export yet
    dialog.set_checked(["current", "pytorch"])
    comparison = run(qtbot, dialog)
    png = dialog.export_plot(tmp_path / "compare.png")
    assert png is not None and QImage(str(png)).width() > 100
    svg = dialog.export_plot(tmp_path / "compare.svg")
    assert svg is not None and ET.parse(svg).getroot().tag.endswith("svg")
    written = dialog.export_csv(tmp_path / "compare.csv")
    assert written is not None
    rows = list(csv.DictReader(io.StringIO(written.read_text())))
    assert len(rows) == 39 and rows[0]["module"] == "0"
    assert [float(r["pytorch activation_std"]) for r in rows] == [
        p.activation_std for p in comparison.schemes[1].points
    ]
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_cancel_leaves_the_model_and_edits_wait_while_it_runs(deep, qtbot):
    window, dialog, _x = deep
    model = window.state.session.model
    before = state_bytes(model)
    errors: list[str] = []
    window.errorShown.connect(errors.append)
    dialog.set_checked(["current", "lsuv", "pytorch"])
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert window.state.model_busy == "compare"
    qtbot.mouseClick(window.init_panel.apply_button, Qt.MouseButton.LeftButton)  # must wait
    assert errors and "wait until the compare task" in errors[-1]
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert window.state.model_busy is None and "cancelled" in dialog.message.text()
    assert dialog.worker.wait()
    qtbot.wait(50)  # a result from the cancelled run, if any, would arrive now: it must not
    assert dialog.comparison is None and same(state_bytes(model), before)
    run(qtbot, dialog)  # and it runs again
    assert dialog.comparison is not None


def test_what_cannot_run_is_one_line(deep, qtbot):
    window, dialog, _x = deep
    failures: list[str] = []
    dialog.failed.connect(failures.append)
    dialog.set_checked([])
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    dialog.set_checked(["current"])
    dialog.input_edit.setText("rand(2,")
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert [("tick at least one" in failures[0]), ("rand(2," in failures[1])] == [True, True]
    dialog.input_edit.setText("randn(32,64)")
    qtbot.keyClicks(dialog.new_scheme, "mup")  # needs base_width
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    dialog.set_checked(["mup"])
    with qtbot.waitSignal(dialog.failed, timeout=60_000) as blocker:
        qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert "base_width" in blocker.args[0]
    window.init_panel.set_initializer("custom")
    dialog.set_checked([PANEL])
    qtbot.mouseClick(dialog.run_button, Qt.MouseButton.LeftButton)
    assert "custom Python function" in failures[-1]
    assert all("\n" not in f for f in failures) and window.state.model_busy is None


def test_a_source_without_code_cannot_compare(open_demo, qtbot, tmp_path):
    from safetensors.torch import save_file

    window = open_demo("deep_mlp")
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in window.state.session.model.state_dict().items()}, str(path))
    with qtbot.waitSignal(window.opened, timeout=60_000):
        window.open_source(str(path))
    qtbot.waitUntil(lambda: window.state.session.opened.source == str(path), timeout=60_000)
    dialog = window.init_tools.show_compare()
    assert not dialog.run_button.isEnabled()
    assert "needs the model's forward" in dialog.message.text()


def test_layer_names_are_thinned_to_fit_the_axis(qtbot):
    plot = SignalPlot()
    qtbot.addWidget(plot)
    names = [f"encoder.layers.{i}.attention.output.dense" for i in range(40)]
    points = [SignalPoint(i, n, "Linear", 1.0, 1.0, True) for i, n in enumerate(names)]
    plot.set_comparison([("a", points), ("b", points)])
    narrow = plot.axis.tickValues(0, 39, 300)[0]
    wide = plot.axis.tickValues(0, 39, 40_000)[0]
    assert wide == (1.0, [float(i) for i in range(40)])
    assert narrow[0] > 1 and len(narrow[1]) < 10  # fewer names, evenly spaced
    labels = plot.axis.tickStrings(narrow[1], 1.0, narrow[0])
    assert labels[0] == short_name(names[0]) == "…output.dense"  # the end of the name says which layer
    assert short_name("blocks.layers.0.linear2") == "…layers.0.linear2" and short_name("head") == "head"
    assert short_name("a_very_long_module_name_without_dots") == "a_very_l…hout_dots"
    plot.set_points(points)  # back to one run: two curves, names kept on the axis
    assert not plot.scheme_curves and len(plot.legend.items) == 2 and len(plot.axis.names) == 40
    assert plot.scheme_legend.scene() is None  # the schemes' legend row is gone
