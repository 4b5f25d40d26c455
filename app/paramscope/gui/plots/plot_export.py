"""Taking plots and tables away: a plot as PNG or SVG, a histogram's bins as CSV, the table as CSV/TSV.

Every file is written next to its target under a temporary name and renamed into place when
complete, so a failed export never leaves a half-written file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401  (registers pg.exporters)
from PySide6.QtCore import QRectF, QSize
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.atomic import write_atomically
from paramscope.core.model.tensor_stats import Histogram
from paramscope.gui.plots.fitted_title import FULL_TITLE

PLOT_FILTER = "PNG image (*.png);;SVG drawing (*.svg)"
CSV_FILTER = "CSV (*.csv)"
PNG_WIDTH = 1200  # pixels; plots on screen are often smaller than a slide wants


def _atomic(target: Path, write: Callable[[Path], None]) -> Path:
    target = Path(target)
    if not target.parent.is_dir():
        raise ParamscopeError(f"{target}: folder {target.parent} does not exist")

    def check(tmp: Path) -> None:
        if tmp.stat().st_size == 0:
            raise ParamscopeError(f"{target}: nothing was written")

    return write_atomically(target, write, check)


def export_plot(plot: pg.PlotItem, path: str | Path) -> Path:
    """Write ``plot`` to ``path``: ``.svg`` as an SVG drawing, anything else as a PNG image.

    Example:
        >>> export_plot(window.histogram_panel.view.plot, "hist.png")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix.lower() == ".svg":
        return _atomic(path, lambda tmp: _write_svg(plot, tmp))
    else:
        if path.suffix.lower() != ".png":
            path = path.with_suffix(path.suffix + ".png") if path.suffix else path.with_suffix(".png")
        exporter = pg.exporters.ImageExporter(plot)
        exporter.parameters()["width"] = PNG_WIDTH
    return _atomic(path, lambda tmp: exporter.export(str(tmp)))


def _write_svg(plot: pg.PlotItem, target: Path) -> None:
    """Render the plot's scene rectangle as vector SVG through Qt's own generator.

    pyqtgraph's SVGExporter fails on the path syntax that current Qt writes ("not enough values
    to unpack"), so the scene is painted onto a QSvgGenerator instead.
    """
    source = plot.sceneBoundingRect()
    generator = QSvgGenerator()
    generator.setFileName(str(target))
    generator.setSize(QSize(int(source.width()), int(source.height())))
    generator.setViewBox(QRectF(0, 0, source.width(), source.height()))
    generator.setTitle(plot.property(FULL_TITLE) or plot.titleLabel.text or "paramscope plot")
    generator.setDescription("exported by paramscope")
    painter = QPainter()
    if not painter.begin(generator):
        raise ParamscopeError(f"{target}: cannot write an SVG file there")
    try:
        plot.scene().render(painter, QRectF(0, 0, source.width(), source.height()), source)
    finally:
        painter.end()


def export_histogram_csv(histogram: Histogram, path: str | Path) -> Path:
    """Write the bins (``left,right,count``, then NaN/+Inf/-Inf rows) of ``histogram`` as CSV."""
    text = histogram.to_csv()
    return _atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def rows_as_text(header: list[str], rows: list[list[str]], separator: str = "\t") -> str:
    """Rows as CSV (``separator=","``, quoted where needed) or TSV (tabs inside cells become spaces)."""
    if separator == "\t":
        lines = ["\t".join(c.replace("\t", " ") for c in row) for row in [header, *rows]]
        return "\n".join(lines) + "\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def export_rows_csv(header: list[str], rows: list[list[str]], path: str | Path) -> Path:
    """Write a table (a heat strip's grid, the series table) as CSV."""
    text = rows_as_text(header, rows, ",")
    return _atomic(Path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
