"""The Spectrum tab: singular values of the selected weight, its norms, and Marchenko–Pastur.

The weight is read as a matrix ``out x rest`` (a conv weight flattened, as the Heatmap tab
shows it) and :func:`paramscope.core.model.spectra.spectrum` gives its singular values. Left: the
singular values in descending order, log scale, with the Marchenko–Pastur edges as dashed
lines. Right: their histogram with the Marchenko–Pastur density of an i.i.d. matrix of the same
shape and entry std drawn over it, as the Histogram tab draws an initializer's density. A freshly
initialized random weight fills the law; values above the upper edge are structure an i.i.d.
init does not make (Martin & Mahoney 2021).

A matrix whose SVD costs more than :data:`SYNC_COST` is computed in a
:class:`~paramscope.gui.workers.TaskWorker` with a busy bar and Cancel (one LAPACK call cannot
report a fraction: Cancel drops its result at once and the thread ends when the call returns).
The tab computes only while it is on screen.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.edit.weights import weights, weights_read, weights_stand_in
from paramscope.core.model import spectra
from paramscope.core.model.dequantize import quantized_in
from paramscope.core.model.expert_spectra import ExpertsSpectrum
from paramscope.core.model.experts import experts_layout_of
from paramscope.core.model.spectra import SpectraRequest, SpectraResult, Spectrum
from paramscope.gui import colors
from paramscope.gui.plots.axes import IntegerAxis, LogAxis
from paramscope.gui.plots.drawn_units import SHORT_LABELS, unit_for, unit_text
from paramscope.gui.plots.when_shown import RefreshWhenShown
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker

#: ``rows * cols * min(rows, cols)`` above which the SVD runs in the worker (~0.1 s here).
SYNC_COST = 1 << 25


def histogram_bins(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Edges for the singular values: about sqrt(n) bins (8 to 64) over values and law together."""
    count = int(min(64, max(8, round(math.sqrt(max(len(values), 1))))))
    lo = min(float(values.min()), low) if len(values) else low
    hi = max(float(values.max()), high) if len(values) else high
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, count + 1)


def describe(spectrum: Spectrum) -> str:
    """The numbers under the plots, one line each."""
    law = spectrum.marchenko_pastur
    shape = "x".join(map(str, spectrum.shape))
    matrix = f"{spectrum.rows} x {spectrum.cols}"
    flattened = f" ({shape} flattened to rows x rest)" if len(spectrum.shape) > 2 else ""
    if isinstance(spectrum, ExpertsSpectrum):
        matrix = f"{spectrum.experts} experts, each {matrix}"
        flattened = " (their singular values pooled; per expert: largest spectral norm and condition number, mean stable rank, smallest rank)"
    stable = "-" if spectrum.stable_rank is None else f"{spectrum.stable_rank:.4g}"
    return "\n".join([
        f"{spectrum.name}: {matrix}{flattened}",
        f"spectral norm {spectrum.spectral_norm:.4g} · Frobenius norm {spectrum.frobenius:.4g} · "
        f"stable rank {stable} · condition number {spectrum.condition_number:.4g} · rank {spectrum.rank}",
        f"Marchenko–Pastur for i.i.d. entries with this std (σ={law.sigma:.4g}): singular values in "
        f"[{law.low:.4g}, {law.high:.4g}]; {spectrum.outliers()} above the upper edge",
    ])  # fmt: skip


class SpectrumView(RefreshWhenShown, QWidget):
    """Singular values and their histogram for the selected tensor, refreshed when it changes.

    Signals:
        computed(object): the :class:`~paramscope.core.model.spectra.Spectrum` now shown.
        skipped(str): the selected tensor has no spectrum shown, and why (one line).
    """

    computed = Signal(object)
    skipped = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.spectrum: Spectrum | None = None
        self.worker = TaskWorker(self)
        self._dirty = True
        self._forced: str | None = None  # a tensor the user asked to compute despite its size
        self._dequantized = False  # the tensor shown is stored quantized: its weights' spectrum
        self._build()
        self.worker.finished.connect(self._on_result)
        self.worker.failed.connect(lambda message: self._clear(" ".join(message.split())))
        self.worker.done.connect(lambda: self._set_busy(False))
        state.sessionChanged.connect(self._invalidate)
        state.tensorSelected.connect(lambda _n: self._invalidate())
        state.tensorsChanged.connect(self._on_changed)

    def _build(self) -> None:
        # colours follow the light/dark scheme (palette.py); labels that fit (axes.py)
        self.values_widget = pg.PlotWidget(axisItems={"left": LogAxis("left"), "bottom": IntegerAxis("bottom")})
        self.plot = self.values_widget.getPlotItem()
        self.plot.setLogMode(x=False, y=True)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "index (descending)")
        self.plot.setLabel("left", "singular value")
        self.values_item = self.plot.plot([], [], pen=pg.mkPen(colors.CURRENT_PLOT, width=2), connect="finite")
        dash = pg.mkPen(colors.THEORY_PLOT, width=1.5, style=Qt.PenStyle.DashLine)
        self.edges = [pg.InfiniteLine(angle=0, pen=dash, movable=False) for _ in range(2)]
        for line in self.edges:
            self.plot.addItem(line)
        self.histogram_widget = pg.PlotWidget(axisItems={"left": IntegerAxis("left")})
        self.histogram_plot = self.histogram_widget.getPlotItem()
        self.histogram_plot.showGrid(x=True, y=True, alpha=0.25)
        self.histogram_plot.setLabel("bottom", "singular value")
        self.histogram_plot.setLabel("left", "count")
        fill = pg.mkColor(colors.CURRENT_PLOT)
        fill.setAlpha(90)
        self.bars_item = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=fill,
                                         pen=pg.mkPen(colors.CURRENT_PLOT, width=1.5))  # fmt: skip
        self.law_item = pg.PlotDataItem(pen=pg.mkPen(colors.THEORY_PLOT, width=2, style=Qt.PenStyle.DashLine))
        self.histogram_plot.addItem(self.bars_item)
        self.histogram_plot.addItem(self.law_item)
        # No legend: at half the tab's width a legend row made the plot wider than its room.
        for plot in (self.plot, self.histogram_plot):
            for side in ("left", "bottom"):
                plot.getAxis(side).enableAutoSIPrefix(False)  # 0.3, not "300 (x0.001)"
        self.law_box = QCheckBox("Marchenko–Pastur overlay")
        self.law_box.setToolTip("The singular-value law of an i.i.d. random matrix with this shape and entry std")
        self.law_box.setChecked(True)
        self.law_box.toggled.connect(lambda _on: self._draw())
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # one SVD call: busy, no fraction
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.compute_button = QPushButton("Compute anyway")
        self.compute_button.setToolTip("An exact SVD of a matrix this large can take minutes")
        self.compute_button.clicked.connect(self.compute_anyway)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._lay_out()
        self._set_busy(False)
        self.compute_button.hide()

    def _lay_out(self) -> None:
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.values_widget)
        plots.addWidget(self.histogram_widget)
        row = QHBoxLayout()
        row.addWidget(self.law_box)
        row.addStretch(1)
        row.addWidget(self.progress)
        row.addWidget(self.cancel_button)
        row.addWidget(self.compute_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(row)
        layout.addWidget(plots, 1)
        layout.addWidget(self.message)

    # --- when to compute -----------------------------------------------------------------------
    def _on_changed(self, names: tuple[str, ...]) -> None:
        if self.state.selected_tensor in names:
            self._invalidate()

    def _invalidate(self) -> None:
        # An SVD is costly: only for the tab on screen (showEvent catches up). One being computed
        # is of values no longer selected or current: dropped.
        self.worker.cancel()
        self.mark_stale()

    def compute_anyway(self) -> None:
        """Compute the selected tensor's spectrum, even when both its sides exceed MAX_SIDE."""
        self._forced = self.state.selected_tensor
        self.refresh()

    def refresh(self) -> None:
        """Compute the selected tensor's spectrum (in the worker when large) and draw it."""
        self._dirty = False
        self.worker.cancel()
        self.compute_button.hide()
        name = self.state.selected_tensor if self.state.has_session else None
        if name is None:
            self._clear("Select a weight (2-D or more) to see its singular values.")
            return
        session = self.state.session
        experts = experts_layout_of(session.model, name, session.tensor(name))
        # its shape and dtype (a lazily opened one is read below); a quantized one's weights
        tensor = weights_stand_in(session, name)
        self._dequantized = quantized_in(name, session.report) is not None
        max_side = None if self._forced == name else spectra.MAX_SIDE
        reason = spectra.why_not(tensor, max_side)
        if reason is not None:
            self._clear(f"{name}: {reason}")
            self.compute_button.setText("Compute anyway")
            self.compute_button.setVisible(reason.endswith("(an exact SVD would take long)"))
            return
        read_once = functools.cache(lambda _n: weights(session, name))  # (the run asks more than once)
        request = SpectraRequest([name], read_once, max_side, experts_of=lambda _n: experts)
        shape = tuple(tensor.shape)
        # (a lazily opened tensor is read in the worker: from disk or the network, any size)
        reads = weights_read(session, name)
        if spectra.svd_cost(shape, experts is not None) <= SYNC_COST and not session.unread_bytes(reads):
            self._on_result(spectra.run(request))
            return
        what = (f"{shape[0]} experts' {shape[1]} x {shape[2]}" if experts is not None
                else f"a {shape[0]} x {tensor.numel() // shape[0]}")  # fmt: skip
        self._clear(f"{name}: computing the singular values of {what} matri{'ces' if experts is not None else 'x'}…")
        self._set_busy(True)
        self.worker.start(lambda task_state: spectra.run(request, task_state), f"spectrum of {name}")

    def cancel(self) -> None:
        """Stop waiting for the SVD being computed (its result is dropped)."""
        if self.worker.is_running:
            self.worker.cancel()
            self._clear("cancelled: the spectrum was not computed")
            self.compute_button.setText("Compute")
            self.compute_button.show()

    def _set_busy(self, busy: bool) -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)

    # --- drawing -------------------------------------------------------------------------------
    def refresh_failed(self, message: str) -> None:
        self._clear(f"{self.state.selected_tensor or 'spectrum'}: {message}")

    def _on_result(self, result: SpectraResult) -> None:
        if result.skipped:
            name, reason = next(iter(result.skipped.items()))
            self._clear(f"{name}: {reason}")
            return
        self.spectrum = next(iter(result.spectra.values()))
        self._draw()
        self.computed.emit(self.spectrum)

    def _draw(self) -> None:
        spectrum = self.spectrum
        if spectrum is None:
            return
        values = spectrum.singular_values
        positive = np.where(values > 0, values, np.nan)  # a log axis cannot show 0: a gap
        self.values_item.setData(np.arange(1, len(values) + 1, dtype=np.float64), positive)
        law = spectrum.marchenko_pastur
        overlay = self.law_box.isChecked() and law.sigma > 0
        for line, edge in zip(self.edges, (law.high, law.low), strict=True):
            line.setVisible(overlay and edge > 0)
            if edge > 0:
                line.setPos(math.log10(edge))  # the view is in log10 units on a log axis
        low, high = (law.low, law.high) if overlay else (float(values.min()), float(values.max()))
        # in a unit named in the axis title: long labels, and bins of subnormal values, which
        # numpy's linspace rounds into edges that do not increase
        unit = unit_for(max(float(values.max()), high), SHORT_LABELS)
        self.histogram_plot.setLabel("bottom", "singular value" + unit_text(unit))
        edges = histogram_bins(values / unit, low / unit, high / unit)
        counts, _ = np.histogram(values / unit, bins=edges)
        self.bars_item.setData(edges, counts.astype(np.float64))
        if overlay:
            x, y = law.curve(edges * unit, len(values))
            self.law_item.setData(x / unit, y)
        self.law_item.setVisible(overlay)
        self.plot.setTitle(f"{len(values)} singular values")  # the tensor's name is in the text below
        self.histogram_plot.setTitle("histogram" + (", dashed: M–P law" if overlay else ""))
        zeros = int(np.sum(values == 0))
        note = f"\n{zeros} singular value(s) are 0 (not drawn on the log scale)" if zeros else ""
        if self._dequantized:  # (in the text: the plot's title has no room for it)
            note += "\nof the weights, dequantized: the stored codes times their block's scale"
        self.message.setText(describe(spectrum) + note)

    def _clear(self, message: str) -> None:
        self.spectrum = None
        self.values_item.setData([], [])
        self.bars_item.setData([0.0, 1.0], [0.0])
        self.law_item.setData([], [])
        for line in self.edges:
            line.hide()
        self.plot.setTitle(None)
        self.histogram_plot.setTitle(None)
        self.message.setText(message)
        if not message.endswith("…"):
            self.skipped.emit(message)
