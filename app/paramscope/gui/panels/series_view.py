"""The Series view: a run's checkpoints over time, as a table and a layers x steps heat strip.

The series is computed by the core's :func:`~paramscope.core.runs.series.compute_series` in a worker
(progress and cancel in the view's own bar); clicking a cell of the strip, or a row of the
table, draws that tensor's histogram at the step over the one before it, both binned alike by
:func:`~paramscope.core.runs.series_histograms.step_histograms`. The view keeps the sources as they
were given (a URL with its query, say) to read them again for histograms; it shows only the
cleaned names the core returns. It holds no model: the window's open model is untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QPoint, QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.safety import UntrustedFileError
from paramscope.core.runs.series import Series, SeriesRow, compute_series, open_checkpoint
from paramscope.core.runs.series_histograms import step_histograms
from paramscope.gui.consent import confirm_trust
from paramscope.gui.models.series_model import (
    COL_NAME,
    COLUMNS,
    SeriesFilterProxy,
    SeriesTableModel,
    step_labels,
)
from paramscope.gui.panels.series_dialog import SeriesDialog
from paramscope.gui.plots import plot_export
from paramscope.gui.plots.heat_strip import METRICS, HeatStrip, elided
from paramscope.gui.plots.histogram_view import HistogramView
from paramscope.gui.state import AppState
from paramscope.gui.widths import fit_columns, narrow_combo
from paramscope.gui.workers import TaskWorker

TENSORS, MODULES = "tensors", "modules"
NAME_WIDTH = 220  # pixels at most for the Name column (the tooltip has the whole name)
TITLE_CHARS = 30  # a pyqtgraph title is as wide as its text at least: longer ones widened the plot past its pane
SHARES = (0.30, 0.38, 0.32)  # of the view's width: table, strip, histogram (the first time it shows)


def module_tensors(series: Series, module: str) -> list[str]:
    """The tensors pooled into ``module``'s row (those directly in it; "(root)" for top-level ones)."""
    key = "" if module == "(root)" else module
    return [row.name for row in series.tensors if row.name.rpartition(".")[0] == key]


class SeriesView(QWidget):
    """Open a series, see it as a table and a heat strip, click a cell for its histograms.

    Signals:
        opening(): a series started computing (the window shows the view).
        seriesReady(object): a :class:`Series` is shown.
        histogramsReady(object): ``(row name, step index, [before, now])`` is drawn.
        openCheckpoint(str): the user asked to open one of the checkpoints as the window's model.
    """

    opening = Signal()
    seriesReady = Signal(object)
    histogramsReady = Signal(object)
    openCheckpoint = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None, *, interactive: bool = True) -> None:
        super().__init__(parent)
        self.state = state
        self.interactive = interactive
        self.series: Series | None = None
        self.sources: list[str] = []  # as given, in the series' order (histograms read them again)
        self.trust = False
        self.dialog: SeriesDialog | None = None
        self._shown_cell: tuple[str, int, int] | None = None
        self.worker = TaskWorker(self)
        self.worker.failed.connect(self.state.errorOccurred.emit)
        self.worker.finished.connect(self._series_done)
        self.worker.started.connect(self._work_started)
        self.worker.progress.connect(lambda fraction, message: self._progress(fraction, message))
        self.worker.done.connect(self._work_done)
        self.histogram_worker = TaskWorker(self)
        self.histogram_worker.failed.connect(self._histograms_failed)
        self.histogram_worker.finished.connect(self._histograms_done)
        self._build()

    # --- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.strip = HeatStrip(self)
        self.strip.cellClicked.connect(self._strip_clicked)
        self.histogram = HistogramView(self)
        self.histogram.clear("Click a cell of the strip (or a row of the table) to see its histograms.")
        self.model = SeriesTableModel(self)
        self.proxy = SeriesFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView(self)
        self.table.setModel(self.proxy)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # the series' order first
        self.table.setSortingEnabled(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # layer names differ at both ends
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._table_menu)
        self.table.selectionModel().currentRowChanged.connect(self._table_row_changed)
        self.filter_box = QLineEdit(self)
        self.filter_box.setPlaceholderText("Filter by name…")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.textChanged.connect(self.proxy.setFilterFixedString)

        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.filter_box)
        left_layout.addWidget(self.table, 1)
        # Side by side: a bottom dock is wide and low, and each part wants the whole height.
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        for widget in (left, self.strip, self.histogram):
            self.splitter.addWidget(widget)
        self._shared = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self._build_bar())
        layout.addWidget(self.splitter, 1)

    def _build_bar(self) -> QHBoxLayout:
        self.open_button = QPushButton("Open series…", self)
        self.open_button.setToolTip("A glob, a run's folder, or several checkpoints (files or URLs)")
        self.open_button.clicked.connect(self.open_dialog)
        self.summary = QLabel("No series open.", self)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rows_box = QComboBox(self)
        self.rows_box.addItem("Per tensor", TENSORS)
        self.rows_box.addItem("Per module", MODULES)
        self.rows_box.setToolTip("Rows: each tensor, or each module with its own tensors pooled")
        self.rows_box.currentIndexChanged.connect(lambda _i: self._show_rows())
        self.metric_box = narrow_combo(QComboBox(self), 14)
        for key, (label, _) in METRICS.items():
            self.metric_box.addItem(label, key)
        self.metric_box.currentIndexChanged.connect(lambda _i: self.strip.set_metric(self.metric))
        self.export_button = QToolButton(self)
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        menu.addAction("Heat strip as PNG/SVG…").triggered.connect(self._export_strip_dialog)
        menu.addAction("Heat strip as CSV…").triggered.connect(lambda: self._export_csv_dialog(self.export_strip_csv))
        menu.addAction("Table as CSV…").triggered.connect(lambda: self._export_csv_dialog(self.export_table_csv))
        self.export_button.setMenu(menu)
        self.export_button.setEnabled(False)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setFormat("series %p%")
        self.progress_bar.setMaximumWidth(200)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop computing the series (the one shown stays)")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_bar.hide()
        self.cancel_button.hide()
        bar = QHBoxLayout()
        for widget in (self.open_button, self.summary):
            bar.addWidget(widget)
        bar.addStretch(1)
        for widget in (QLabel("Rows:"), self.rows_box, QLabel("Colour:"), self.metric_box, self.export_button):
            bar.addWidget(widget)
        bar.addWidget(self.progress_bar)
        bar.addWidget(self.cancel_button)
        return bar

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._shared and self.width() > 100:  # stretch factors leave the table its minimum
            self._shared = True
            self.splitter.setSizes([int(self.width() * share) for share in SHARES])

    @property
    def mode(self) -> str:
        return self.rows_box.currentData()

    @property
    def metric(self) -> str:
        return self.metric_box.currentData()

    def set_mode(self, mode: str) -> None:
        self.rows_box.setCurrentIndex(self.rows_box.findData(mode))

    def set_metric(self, metric: str) -> None:
        self.metric_box.setCurrentIndex(self.metric_box.findData(metric))

    def rows(self) -> list[SeriesRow]:
        if self.series is None:
            return []
        return self.series.tensors if self.mode == TENSORS else self.series.modules

    # --- opening ----------------------------------------------------------------------------------
    def open_dialog(self) -> None:
        """File > Open series…: ask (window-modal), then compute what was asked for."""
        self.dialog = SeriesDialog(self.window())
        self.dialog.accepted.connect(lambda: self.open_series(self.dialog.specs()) if self.dialog else None)
        self.dialog.open()

    def open_series(self, specs: list[str], trust: bool = False, *, open_latest: bool = False) -> None:
        """Compute the series of ``specs`` (a glob, a folder, files or URLs) off the GUI thread.

        ``open_latest``: then ask the window to open the run's latest checkpoint as its model
        (``paramscope --series``: the tree shows where the run ended).
        """
        recorded: list[str] = []

        def opener(source: str, trusted: bool) -> Any:
            recorded.append(source)  # compute_series opens them one by one, in the series' order
            return open_checkpoint(source, trusted)

        def work(state: Any) -> Any:
            try:
                return compute_series(list(specs), trust=trust, state=state, opener=opener), recorded, trust, open_latest
            except UntrustedFileError as exc:  # asked about on the GUI thread
                return exc, list(specs), trust, open_latest

        self.opening.emit()
        self.worker.start(work, f"series of {' '.join(specs)}")

    def cancel(self) -> None:
        self.worker.cancel()

    def cancel_and_wait(self) -> None:
        self.worker.cancel_and_wait()
        self.histogram_worker.cancel_and_wait()

    def _series_done(self, result: tuple[Any, list[str], bool, bool]) -> None:
        series, sources, trust, open_latest = result
        if isinstance(series, UntrustedFileError):
            if self.interactive and not trust and confirm_trust(self.window(), series):
                self.open_series(sources, trust=True, open_latest=open_latest)
            else:
                self.state.errorOccurred.emit(str(series))
            return
        self.set_series(series, sources, trust)
        if open_latest:
            self.openCheckpoint.emit(sources[-1])

    def set_series(self, series: Series, sources: list[str], trust: bool = False) -> None:
        """Show ``series``; ``sources`` are its checkpoints as given, in its order."""
        self.series, self.sources, self.trust = series, list(sources), trust
        steps = step_labels(series)
        self.summary.setText(
            f"{len(series.sources)} checkpoints ({steps[0]} … {steps[-1]}), "
            f"{len(series.tensors)} tensors in {len(series.modules)} modules"
        )
        self.summary.setToolTip("\n".join(f"{label}: {source}" for label, source in zip(steps, series.sources, strict=True)))
        self.export_button.setEnabled(True)
        self._show_rows()
        self.seriesReady.emit(series)

    def _show_rows(self) -> None:
        rows = self.rows()
        steps = step_labels(self.series) if self.series is not None else []
        self._shown_cell = None
        self.histogram_worker.cancel()  # histograms of another series (or of the other rows) are stale
        self.model.set_rows(rows, steps)
        self.strip.show_rows(rows, steps, self.metric)
        fit_columns(self.table.horizontalHeader(), self.model, caps={COL_NAME: NAME_WIDTH})
        self.histogram.clear("Click a cell of the strip (or a row of the table) to see its histograms.")

    def _work_started(self, _what: str) -> None:
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.cancel_button.show()

    def _progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(fraction * 100))
        self.progress_bar.setToolTip(message)

    def _work_done(self) -> None:
        if not self.worker.is_running:
            self.progress_bar.hide()
            self.cancel_button.hide()

    # --- cells ------------------------------------------------------------------------------------
    def _strip_clicked(self, row: int, step: int) -> None:
        self._select_table_row(row, step)
        self.show_cell(row, step)

    def _table_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        row, step = self.model.cell(self.proxy.mapToSource(current).row())
        self.strip.select_cell(row, step)
        self.show_cell(row, step)

    def _select_table_row(self, row: int, step: int) -> None:
        source = self.model.index(self.model.table_row(row, step), 0)
        index = self.proxy.mapFromSource(source)
        if not index.isValid():  # filtered out: the strip still shows the cell
            return
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.table.selectionModel().setCurrentIndex(index, flags)
        self.table.scrollTo(index)

    def show_cell(self, row: int, step: int) -> None:
        """Histograms of row ``row`` (tensor, or a module's tensors added up) at ``step`` and the step before."""
        if self.series is None:
            return
        name = self.rows()[row].name
        if self._shown_cell == (self.mode, row, step):
            return
        self._shown_cell = (self.mode, row, step)
        names = [name] if self.mode == TENSORS else module_tensors(self.series, name)
        sources = self.sources[max(0, step - 1) : step + 1]
        trust = self.trust
        self.histogram.clear(f"{name}: reading {len(sources)} checkpoint(s)…")

        def work(state: Any) -> Any:
            return name, step, step_histograms(sources, names, trust=trust, state=state)

        self.histogram_worker.start(work, f"histograms of {name}")

    def _histograms_done(self, result: tuple[str, int, list[Any]]) -> None:
        name, step, histograms = result
        steps = step_labels(self.series) if self.series is not None else []
        now, before = histograms[-1], histograms[0] if len(histograms) == 2 else None
        pooled = "" if self.mode == TENSORS or self.series is None else f" ({len(module_tensors(self.series, name))} tensors)"
        if now is None:
            self.histogram.clear(f"{name} is absent from the checkpoint at {steps[step]}.")
        else:
            before_label = steps[step - 1] if step > 0 else ""  # the legend names both steps
            title = elided(name, TITLE_CHARS - len(pooled)) + pooled
            self.histogram.set_histograms(now, before, title=title, labels=(steps[step], before_label))
        self.histogramsReady.emit(result)

    def _histograms_failed(self, message: str) -> None:
        self._shown_cell = None
        self.histogram.clear(message)
        self.state.errorOccurred.emit(message)

    # --- context menu -------------------------------------------------------------------------------
    def _table_menu(self, pos: QPoint) -> None:
        index = self.table.indexAt(pos)
        if not index.isValid() or not self.sources:
            return
        _row, step = self.model.cell(self.proxy.mapToSource(index).row())
        menu = QMenu(self)
        label = step_labels(self.series)[step] if self.series is not None else ""
        action = menu.addAction(f"Open the checkpoint at {label} as the model")
        action.setToolTip(self.series.sources[step] if self.series is not None else "")
        action.triggered.connect(lambda: self.openCheckpoint.emit(self.sources[step]))
        menu.exec(self.table.viewport().mapToGlobal(pos))

    # --- export ---------------------------------------------------------------------------------------
    def _default_path(self, suffix: str) -> str:
        folder = Path(str(QSettings().value("lastExportFolder", str(Path.home()))))
        return str(folder / f"series-{self.metric}{suffix}")

    def _export_strip_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export heat strip", self._default_path(".png"), plot_export.PLOT_FILTER)
        if path:
            QSettings().setValue("lastExportFolder", str(Path(path).parent))
            self._exported(lambda: plot_export.export_plot(self.strip.plot, path), path)

    def _export_csv_dialog(self, export) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export as CSV", self._default_path(".csv"), plot_export.CSV_FILTER)
        if path:
            QSettings().setValue("lastExportFolder", str(Path(path).parent))
            self._exported(lambda: export(path), path)

    def _exported(self, write, path: str) -> Path | None:
        try:
            written = write()
        except (ParamscopeError, OSError) as exc:
            self.state.errorOccurred.emit(f"{path}: could not export: {exc}")
            return None
        self.state.noticeOccurred.emit(f"Written to {written}")
        return written

    def export_strip(self, path: str | Path) -> Path:
        """The heat strip as PNG or SVG (by the suffix)."""
        return plot_export.export_plot(self.strip.plot, path)

    def export_strip_csv(self, path: str | Path) -> Path:
        """The strip's metric, one row per layer and one column per step."""
        header, rows = self.strip.grid_csv()
        return plot_export.export_rows_csv(header, rows, path)

    def export_table_csv(self, path: str | Path) -> Path:
        """The table as shown (per tensor or per module), full precision."""
        return plot_export.export_rows_csv([c[0] for c in COLUMNS], self.model.as_rows(), path)
