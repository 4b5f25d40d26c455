"""Plots people take away: PNG and SVG files, histogram bins as CSV, the table as CSV/TSV."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

from PySide6.QtGui import QGuiApplication, QImage


def test_export_histogram_as_png_svg_and_csv(open_demo, tmp_path):
    window = open_demo("cnn")
    name = max(window.state.session.report.parameters.values(), key=lambda t: t.numel).name
    window.state.select_tensor(name)
    numel = window.state.session.report.parameters[name].numel

    png = window.export_plot(tmp_path / "hist.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not QImage(str(png)).isNull()
    svg = window.export_plot(tmp_path / "hist.svg")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")

    bins = window.export_bins(tmp_path / "bins.csv")
    rows = list(csv.DictReader(io.StringIO(bins.read_text())))
    assert sum(int(r["count"]) for r in rows) == numel  # every element: bars + NaN/Inf rows
    assert [r["left"] for r in rows[-3:]] == ["nan", "+inf", "-inf"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_export_heatmap_png(open_demo, tmp_path):
    window = open_demo("mlp")
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.state.select_tensor("0.weight")
    assert window.current_plot() is window.heatmap_view.plot
    png = window.export_plot(tmp_path / "heat.png")
    assert QImage(str(png)).width() > 100


def test_export_to_a_missing_folder_is_a_message(open_demo, tmp_path, qtbot):
    window = open_demo("mlp")
    window.state.select_tensor("0.weight")
    with qtbot.waitSignal(window.errorShown) as shown:
        assert window.export_plot(tmp_path / "nope" / "x.png") is None
    assert "does not exist" in shown.args[0]


def test_copy_table_as_csv_and_tsv(open_demo):
    window = open_demo("mlp")
    window.state.select_module("")
    window.param_panel.copy_table(",")
    rows = list(csv.reader(io.StringIO(QGuiApplication.clipboard().text())))
    assert rows[0][0] == "Name" and [r[0] for r in rows[1:]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    shape_column = rows[0].index("Shape")
    assert rows[1][shape_column] == "[3, 4]"  # the comma inside is quoted, not a new column
    window.param_panel.copy_table("\t")
    lines = QGuiApplication.clipboard().text().splitlines()
    assert lines[1].split("\t")[:2] == ["0.weight", "[3, 4]"]
