"""The histogram of the selected tensor (values, gradient, or the weights a quantized tensor's
float8 codes or MXFP4 blocks stand for), kept in step with the AppState.

The Initialize panel's Preview draws here too (before / after / theory), where the eye already
is; the preview stays until the tensor, its values or the model change.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from paramscope.core.edit.session import Session
from paramscope.core.edit.weights import weights, weights_read
from paramscope.core.model.dequantize import layout_problem, quantized_in
from paramscope.core.model.model_statistics import TensorSummary, summarize
from paramscope.core.model.tensor_stats import Histogram
from paramscope.core.tasks import TaskState
from paramscope.gui.plots.histogram_view import HistogramView, Theory
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker

VALUES, GRADIENT, DEQUANTIZED = "values", "gradient", "dequantized"
DEQUANTIZING = "dequantized weights"  # the worker's task while it computes them
# Below this many elements a missing summary is computed at once instead of waiting for the worker.
SYNC_SUMMARY_LIMIT = 1 << 20


class HistogramPanel(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.view = HistogramView(self)
        self.mode = QComboBox(self)
        self.mode.addItem("Values", VALUES)
        self.mode.addItem("Gradient", GRADIENT)
        self.mode.addItem("Dequantized", DEQUANTIZED)
        tip = "quantized weights (float8 codes, MXFP4 blocks): each code times its block's scale"
        self.mode.setItemData(2, tip, Qt.ItemDataRole.ToolTipRole)
        self.mode.currentIndexChanged.connect(lambda _i: self.refresh())
        self._theory: Theory | None = None
        self._preview: tuple[str, Histogram, Theory | None] | None = None  # name, would-be values, theory
        self._grad_cache: dict[str, TensorSummary | None] = {}
        self._dequantized: dict[str, TensorSummary] = {}  # canonical name -> its weights' summary
        # Gradients of large tensors, and quantized weights, are summarized here, off the GUI thread.
        self.worker = TaskWorker(self)
        self.worker.finished.connect(self._summary_ready)
        self.worker.failed.connect(self.state.errorOccurred)

        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.mode)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)

        state.sessionChanged.connect(self._on_session)
        state.tensorSelected.connect(self._on_tensor)
        state.summariesChanged.connect(self._on_summaries)
        state.tensorsChanged.connect(self._on_tensors_changed)
        state.gradientsChanged.connect(self._on_gradients)
        self.refresh()

    @property
    def current_mode(self) -> str:
        return self.mode.currentData()

    def set_mode(self, mode: str) -> None:
        self.mode.setCurrentIndex(self.mode.findData(mode))

    def set_theory(self, theory: Theory | None) -> None:
        """Draw a theoretical density (x, pdf, label) over the selected tensor's values."""
        self._theory = theory
        self.refresh()

    def show_preview(self, name: str, after: Histogram, theory: Theory | None) -> None:
        """Draw a preview of ``name``: its would-be histogram over the current one, and the theory."""
        self._preview = (name, after, theory)
        self.set_mode(VALUES)
        self.refresh()

    @property
    def preview_shown(self) -> str | None:
        """The tensor whose preview is drawn, or None."""
        return self._preview[0] if self._preview is not None else None

    # --- state -----------------------------------------------------------------------------
    def _on_session(self) -> None:
        self.worker.cancel()  # (what it computes is of the model replaced)
        self._grad_cache.clear()
        self._dequantized.clear()
        self._theory = None
        self._preview = None
        self.refresh()

    def _on_tensor(self, name: str) -> None:
        self._theory = None
        if self._preview is not None and self._preview[0] != name:
            self._preview = None
        self.refresh()

    def _on_summaries(self, names: tuple[str, ...]) -> None:
        if self.state.selected_tensor in names:
            self.refresh()

    def _on_tensors_changed(self, names: tuple[str, ...]) -> None:
        for name in names:
            self._grad_cache.pop(name, None)
        if self.worker.what == DEQUANTIZING:  # from values now replaced
            self.worker.cancel()
        self._dequantized.clear()  # (a weight or its scale changed: either changes the weights)
        if self._preview is not None and self._preview[0] in names:
            self._preview = None  # the values it was computed from are gone (Apply shows the real ones)
            self.refresh()
        elif self.state.selected_tensor in names:
            self.refresh()

    def _on_gradients(self) -> None:
        self._grad_cache.clear()
        if self.current_mode == GRADIENT:
            self.refresh()

    # --- drawing ---------------------------------------------------------------------------
    def refresh(self) -> None:
        name = self.state.selected_tensor if self.state.has_session else None
        if name is None:
            self.view.clear("Select a parameter to see its histogram.")
            return
        if self.current_mode == GRADIENT:
            self._show_gradient(name)
            return
        if self.current_mode == DEQUANTIZED:
            self._show_dequantized(name)
            return
        if self._preview is not None:
            self._show_preview(*self._preview)
            return
        session = self.state.session
        summary = session.summary(name)
        # (a lazily opened tensor is read by the statistics worker: from disk or the network,
        # and once; here it would have been read a second time, on the GUI thread)
        if summary is None and session.report.tensor(name).numel <= SYNC_SUMMARY_LIMIT and not session.unread_bytes([name]):
            summary = session.ensure_summary(name)
        if summary is None:
            self.view.clear(f"{name}: computing statistics…")
            return
        previous = session.previous_summary(name)
        quantized = quantized_in(name, session.report)
        self.view.set_histograms(
            summary.histogram,
            previous.histogram if previous is not None else None,
            self._theory,
            title=name if quantized is None else f"{name} ({quantized.stored_as})",  # (its end survives an elided middle)
        )

    def _show_preview(self, name: str, after: Histogram, theory: Theory | None) -> None:
        session = self.state.session
        before = session.summary(name)
        self.view.set_histograms(
            after,
            before.histogram if before is not None else None,
            theory,
            title=f"preview: {name} (model unchanged)",
            labels=("after (preview)", "before"),
        )

    def cancel_and_wait(self) -> None:
        self.worker.cancel_and_wait()

    def _summary_ready(self, result: tuple[str, str, TensorSummary]) -> None:
        mode, name, summary = result
        if mode == DEQUANTIZED:
            self._dequantized[name] = summary
        else:
            self._grad_cache[name] = summary
        if self.current_mode == mode and self.state.selected_tensor == name:
            self.refresh()

    def _show_dequantized(self, name: str) -> None:
        session = self.state.session
        canonical, quantized = session.canonical(name), quantized_in(name, session.report)
        if quantized is None:
            dtype = session.report.tensor(name).dtype
            self.view.clear(
                f"{name}: float8 with no _scale_inv or _scale beside it: its values are the weights"
                if dtype.startswith("float8")
                else f"{name}: {dtype}, stored as used (Dequantized is for float8 codes or MXFP4 blocks stored with their scales)"
            )
            return
        scale = quantized.scale
        shapes = (session.report.tensor(name).shape or (), session.report.tensor(scale).shape or ())
        problem = layout_problem(*shapes, quantized.stored_as)
        if problem is not None:
            self.view.clear(f"{name}: {problem}")
            return
        summary = self._dequantized.get(canonical)
        if summary is None:
            elements = session.report.tensor(name).numel
            if elements > SYNC_SUMMARY_LIMIT or session.unread_bytes(weights_read(session, name)):  # (lazily opened)
                self.view.clear(f"{name}: computing the dequantized weights…")
                self.worker.start(lambda st: (DEQUANTIZED, canonical, _dequantized_summary(session, name, st)), DEQUANTIZING)
                return
            summary = self._dequantized[canonical] = _dequantized_summary(session, name)
        self.view.set_histograms(summary.histogram, title=f"{name} × {scale.rpartition('.')[2]} (dequantized)")

    def _show_gradient(self, name: str) -> None:
        session = self.state.session
        if name not in self._grad_cache:
            grad = session.tensor(name).grad
            if grad is not None and grad.numel() > SYNC_SUMMARY_LIMIT:
                self.view.clear(f"{name}: computing the gradient histogram…")
                detached = grad.detach()
                self.worker.start(lambda st: (GRADIENT, name, summarize(detached, state=st)), "gradient histogram")
                return
            self._grad_cache[name] = None if grad is None else summarize(grad.detach())
        summary = self._grad_cache[name]
        if summary is None:
            self.view.clear(f"{name} has no gradient (.grad is None): run a backward pass first.")
            return
        self.view.set_histograms(summary.histogram, title=f"gradient of {name}")


def _dequantized_summary(session: Session, name: str, state: TaskState | None = None) -> TensorSummary:
    """The summary of ``name``'s weights: its codes times its scale (both read, neither kept;
    their shapes fit: :func:`layout_problem` said so)."""
    return summarize(weights(session, name), state=state)
