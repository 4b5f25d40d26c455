"""The main window's plot exports: the front plot as PNG/SVG, the histogram's bins as CSV.

Functions over the window (its tabs, its histogram, its state for errors), used by the File menu
and by the window's own ``export_plot`` / ``export_bins``. Files are written by
:mod:`paramscope.gui.plots.plot_export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog

from paramscope.core.errors import ParamscopeError
from paramscope.gui.plots import plot_export

if TYPE_CHECKING:  # pragma: no cover
    from paramscope.gui.app.main_window import MainWindow


def current_plot(window: MainWindow) -> Any:
    """The pyqtgraph PlotItem on the front plot tab (Histogram, Heatmap or Spectrum), or None."""
    widget = window.tabs.currentWidget()
    if widget is window.histogram_panel:
        return window.histogram_panel.view.plot
    if widget is window.heatmap_view:
        return window.heatmap_view.plot
    if widget is window.spectrum_view:
        return window.spectrum_view.plot
    return None


def export_plot(window: MainWindow, path: str | Path) -> Path | None:
    """Write the front plot (the histogram when Values is in front) as PNG or SVG."""
    plot = current_plot(window) or window.histogram_panel.view.plot
    try:
        written = plot_export.export_plot(plot, path)
    except (ParamscopeError, OSError) as exc:
        window.state.errorOccurred.emit(f"{path}: could not export the plot: {exc}")
        return None
    window.statusBar().showMessage(f"Plot written to {written}", 5000)
    return written


def export_bins(window: MainWindow, path: str | Path) -> Path | None:
    """Write the bins of the histogram shown (values or gradient) as CSV."""
    histogram = window.histogram_panel.view.current
    if histogram is None:
        window.state.errorOccurred.emit("No histogram to export: select a tensor first.")
        return None
    try:
        written = plot_export.export_histogram_csv(histogram, path)
    except (ParamscopeError, OSError) as exc:
        window.state.errorOccurred.emit(f"{path}: could not export the bins: {exc}")
        return None
    window.statusBar().showMessage(f"Bins written to {written}", 5000)
    return written


def default_export_name(window: MainWindow, suffix: str) -> str:
    """``<tensor>-<histogram|heatmap|spectrum><suffix>`` in the folder of the last export."""
    name = (window.state.selected_tensor or "plot") if window.state.has_session else "plot"
    kinds = {window.heatmap_view: "heatmap", window.spectrum_view: "spectrum"}
    kind = kinds.get(window.tabs.currentWidget(), "histogram")
    folder = Path(str(QSettings().value("lastExportFolder", str(Path.home()))))
    return str(folder / f"{name}-{kind}{suffix}")


def export_plot_dialog(window: MainWindow) -> None:
    path, _ = QFileDialog.getSaveFileName(window, "Export plot", default_export_name(window, ".png"), plot_export.PLOT_FILTER)
    if path:
        QSettings().setValue("lastExportFolder", str(Path(path).parent))
        export_plot(window, path)


def export_bins_dialog(window: MainWindow) -> None:
    path, _ = QFileDialog.getSaveFileName(
        window, "Export histogram bins", default_export_name(window, ".csv"), plot_export.CSV_FILTER
    )
    if path:
        QSettings().setValue("lastExportFolder", str(Path(path).parent))
        export_bins(window, path)
