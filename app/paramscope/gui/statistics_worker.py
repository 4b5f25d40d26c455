"""Keeps the statistics of the open model up to date, in the background.

When a model opens (or tensors change), the missing summaries are computed by
:func:`~paramscope.core.model_statistics.compute_model_statistics` in a :class:`TaskWorker`, in a few
batches so the table fills in while the rest is still being computed. Gradient norms no backward
of ours reported (a live model's own ``.grad``, an edit that replaced a parameter) are measured
first, by :func:`~paramscope.core.gradient_norms.compute_grad_norms`.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from paramscope.core.gradient_norms import compute_grad_norms
from paramscope.core.model_statistics import compute_model_statistics, stat_columns
from paramscope.core.report import ModelReport
from paramscope.gui.state import AppState
from paramscope.gui.workers import SliceState, TaskWorker, WorkerState, long_lived_objects

# Batches by bytes: small models in one go, large ones deliver results as they come. Each
# delivery refreshes tree, table and diagnostics on the GUI thread, so not too many of them.
BATCH_BYTES = 64 << 20
# The window settles in rounds after a new model (first paint, then scroll bars appearing and
# docks laid out again: ~150 ms for GPT-2 on a 2-core machine); statistics start after that.
FIRST_PAINT_MS = 200


def _batches(report: ModelReport, names: list[str]) -> list[list[str]]:
    batches: list[list[str]] = [[]]
    size = 0
    for name in names:
        if batches[-1] and size >= BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(name)
        size += report.tensor(name).nbytes
    return [b for b in batches if b]


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
        self.worker.progress.connect(self.progress)
        self.worker.partial.connect(self._store)
        self.worker.failed.connect(self.state.errorOccurred)
        self.worker.done.connect(self._on_done)
        self.worker.started.connect(lambda _what: self.started.emit())
        # A new model is drawn first: starting at once, the worker would compete with that
        # first paint for the GIL and the window would stall while it appears.
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
            self.refresh()

    def _on_grad_norms(self, _names: tuple[str, ...]) -> None:
        if self.state.has_session and self.state.session.missing_grad_norms():
            self.refresh()

    @property
    def complete(self) -> bool:
        return self.state.has_session and not self.missing() and not self.state.session.missing_grad_norms()

    def _refresh_after_paint(self) -> None:
        self.worker.cancel()
        QTimer.singleShot(FIRST_PAINT_MS, self.refresh)

    def refresh(self) -> None:
        """Compute what is missing now (cancels work on a model that is no longer current)."""
        self.worker.cancel()
        names = self.missing()
        grads = self.state.session.missing_grad_norms() if self.state.has_session else []
        if not names and not grads:
            self.allDone.emit()
            return
        session = self.state.session
        model, report, loader = session.model, session.report, session.opened.loader
        tensor_of, version = session.tensor, session.grad_norms_version
        start = 0.1 if grads and names else 0.0 if names else 1.0  # of the progress, after the norms

        @long_lived_objects()  # the summaries of every tensor live as long as the model
        def task(state: WorkerState) -> None:
            # Here, not on the GUI thread: a pass over 100,000 names is ~0.1 s each.
            if grads:
                tensors = {n: tensor_of(n) for n in grads}
                state.deliver(("grad norms", version, compute_grad_norms(tensors, SliceState(state, 0.0, start))))
            batches = _batches(report, names)
            for i, batch in enumerate(batches):
                part = SliceState(state, start + (1 - start) * i / len(batches), start + (1 - start) * (i + 1) / len(batches))
                summaries = compute_model_statistics(model, report, part, names=batch, loader=loader)
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
        self.done.emit()
        if self.complete:
            self.allDone.emit()
