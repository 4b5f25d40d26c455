"""Keeps the statistics of the open model up to date, in the background.

When a model opens (or tensors change), the missing summaries are computed by
:func:`~paramscope.core.model.model_statistics.compute_model_statistics` in a :class:`TaskWorker`, in a few
batches so the table fills in while the rest is still being computed. Gradient norms no backward
of ours reported (a live model's own ``.grad``, an edit that replaced a parameter) are measured
first, by :func:`~paramscope.core.backward.gradient_norms.compute_grad_norms`. For a new model they start
once the window has drawn it (:class:`FirstPaint`), not after a fixed delay.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QTimer, Signal
from PySide6.QtWidgets import QWidget

from paramscope.core.backward.gradient_norms import compute_grad_norms
from paramscope.core.model.model_statistics import (
    compute_model_statistics,
    named_tensors,
    stat_columns,
)
from paramscope.core.model.report import ModelReport
from paramscope.core.model.tensor_stats import prefer_compiled
from paramscope.core.tasks import SliceState
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker, WorkerState, long_lived_objects

# Batches by bytes: small models in one go, large ones deliver results as they come. Each
# delivery refreshes tree, table and diagnostics on the GUI thread, so not too many of them.
BATCH_BYTES = 64 << 20
# ... or of this many tensors: storing a batch's summaries is a pass on the GUI thread (0.4 s for
# a million tiny tensors at once)
PART_TENSORS = 65_536
# A window that never paints (minimized, on another desktop) still gets its statistics.
FIRST_PAINT_MAX_MS = 500


def _batches(report: ModelReport, names: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    size = 0
    for name in names:
        if batches[-1] and (size >= BATCH_BYTES or len(batches[-1]) == PART_TENSORS):
            batches.append([])
            size = 0
        batches[-1].append(name)
        size += report.tensor(name).nbytes
    return [b for b in batches if b]


class FirstPaint(QObject):
    """Emits ``painted`` once ``window`` has painted after :meth:`wait` (the next update request
    it handles), at once when it is not visible, at the latest after :data:`FIRST_PAINT_MAX_MS`."""

    painted = Signal()

    def __init__(self, window: QWidget | None) -> None:
        super().__init__(window)
        self.window = window
        self._pending = False
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.setInterval(FIRST_PAINT_MAX_MS)
        self._deadline.timeout.connect(self._done)

    def wait(self) -> None:
        if self.window is None or not self.window.isVisible():
            self.painted.emit()
        elif not self._pending:
            self._pending = True
            self.window.installEventFilter(self)
            self._deadline.start()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if self._pending and event.type() == QEvent.Type.UpdateRequest:
            QTimer.singleShot(0, self._done)  # runs once this update has painted
        return False

    def _done(self) -> None:
        if not self._pending:
            return
        self._pending = False
        self._deadline.stop()
        if self.window is not None:
            self.window.removeEventFilter(self)
        self.painted.emit()


class StatisticsWorker(QObject):
    """Computes missing summaries for ``state``'s session and stores them through the state.

    Signals:
        progress(float, str), started(), done(): relayed from the worker.
        allDone(): every tensor of the current session has a summary (what a screenshot waits for).
    """

    progress = Signal(float, str)
    started = Signal()
    done = Signal()
    allDone = Signal()

    def __init__(self, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.worker = TaskWorker(self)
        self._computing: tuple[object, list[str]] | None = None  # (session, names) of the running task
        self.worker.progress.connect(self.progress)
        self.worker.partial.connect(self._store)
        self.worker.failed.connect(self.state.errorOccurred)
        self.worker.done.connect(self._on_done)
        self.worker.started.connect(lambda _what: self.started.emit())
        # A new model is drawn first: starting at once, the worker would compete with that
        # first paint for the GIL and the window would stall while it appears (~200 ms for GPT-2).
        self._first_paint = FirstPaint(parent if isinstance(parent, QWidget) else None)
        self._first_paint.painted.connect(self._refresh_unless_under_way)
        state.sessionChanged.connect(self._refresh_after_paint)
        state.tensorsChanged.connect(lambda _names: self.refresh())
        state.tensorSelected.connect(self._on_selected)
        state.gradNormsChanged.connect(self._on_grad_norms)  # forgotten ones are measured again

    @property
    def is_running(self) -> bool:
        return self.worker.is_running

    def missing(self) -> list[str]:
        """Tensors still without a summary; for a huge or lazy source only the selected one."""
        if not self.state.has_session:
            return []
        session = self.state.session
        if session.stats_on_demand:
            selected = self.state.selected_tensor
            return [selected] if selected is not None and session.summary(selected) is None else []
        return session.missing_summaries()

    def _on_selected(self, _name: str) -> None:
        if self.state.has_session and self.state.session.stats_on_demand and not self.complete:
            self._refresh_unless_under_way()

    def _refresh_unless_under_way(self) -> None:
        """:meth:`refresh`, unless the running task computes just what is missing: the first
        paint and the first selection each restarted it, and a lazily opened 1.85 GB tensor was
        read twice at once (a read in progress cannot stop). Edits always restart (refresh)."""
        if self.worker.is_running and self.state.has_session and self._computing == (self.state.session, self.missing()):
            return
        self.refresh()

    def _on_grad_norms(self, _names: tuple[str, ...]) -> None:
        if self.state.has_session and self.state.session.missing_grad_norms():
            self.refresh()

    @property
    def complete(self) -> bool:
        return self.state.has_session and not self.missing() and not self.state.session.missing_grad_norms()

    def _refresh_after_paint(self) -> None:
        self.worker.cancel()
        self._first_paint.wait()

    def refresh(self) -> None:
        """Compute what is missing now (cancels work on a model that is no longer current)."""
        self.worker.cancel()
        names = self.missing()
        grads = self.state.session.missing_grad_norms() if self.state.has_session else []
        if not names and not grads:
            self.allDone.emit()
            return
        session = self.state.session
        self._computing = (session, names)
        model, report, loader = session.model, session.report, session.opened.loader
        # the gradients themselves, taken here: the GUI thread may set .grad to None meanwhile
        gradients, version = session.gradients(grads), session.grad_norms_version
        start = 0.1 if grads and names else 0.0 if names else 1.0  # of the progress, after the norms

        @long_lived_objects()  # the summaries of every tensor live as long as the model
        def task(state: WorkerState) -> None:
            if gradients:
                state.deliver(("grad norms", version, compute_grad_norms(gradients, SliceState(state, 0.0, start))))
            # Here, not on the GUI thread: each pass over 100,000 names takes ~0.1 s.
            batches = _batches(report, names)
            float32 = sum(report.tensor(n).numel for n in names if report.tensor(n).dtype == "float32")
            prefer_compiled(float32)  # one decision for the whole model, not one per batch
            tensors = named_tensors(model, report)  # one walk of the model, not one per batch
            for i, batch in enumerate(batches):
                part = SliceState(state, start + (1 - start) * i / len(batches), start + (1 - start) * (i + 1) / len(batches))
                summaries = compute_model_statistics(model, report, part, names=batch, loader=loader, tensors=tensors)
                state.deliver(("summaries", report, (summaries, stat_columns(report.order, summaries))))

        self.worker.start(task, "statistics")

    def cancel(self) -> None:
        self.worker.cancel()

    def cancel_and_wait(self) -> bool:
        return self.worker.cancel_and_wait()

    def _store(self, delivered: tuple) -> None:
        kind, made_from, results = delivered
        if not self.state.has_session:
            return
        if kind == "grad norms":  # dropped by the session when the gradients changed since
            self.state.store_grad_norms(results, made_from)
        elif made_from is self.state.session.report:
            # A rebuild may have replaced the report since: those numbers describe old tensors.
            self.state.store_summaries(*results)

    def _on_done(self) -> None:
        self._computing = None  # (it holds the session: a replaced model must be freed)
        self.done.emit()
        if self.complete:
            self.allDone.emit()
