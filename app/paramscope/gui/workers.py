"""Run a core ``fn(state) -> result`` off the GUI thread, with progress, cancel and partial results.

The core's long work is plain Python taking a :class:`~paramscope.core.tasks.TaskState`; a
:class:`TaskWorker` runs it in a QThread and turns the state's callbacks into Qt signals. Signals
are emitted from the worker thread and delivered queued to receivers in the GUI thread, so the
worker never touches a widget.

Example:
    >>> worker = TaskWorker()
    >>> worker.finished.connect(show_result)
    >>> worker.start(lambda state: compute_model_statistics(model, report, state), "statistics")
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from paramscope.core.errors import Cancelled, ParamscopeError
from paramscope.core.tasks import TaskState

# A progress signal at most this often: thousands of tensors must not flood the event loop.
PROGRESS_INTERVAL_S = 0.05


_collector_lock = threading.Lock()
_collector = {"holders": 0, "was_enabled": False, "freeze": False}


def hold_collector(freeze: bool = False) -> None:
    """Python's cyclic collector off until every hold is released (nested and concurrent holds
    count); with ``freeze``, everything alive is then frozen (``gc.freeze``)."""
    with _collector_lock:
        if _collector["holders"] == 0:
            _collector["was_enabled"] = gc.isenabled()
            _collector["freeze"] = False
            gc.disable()
        _collector["holders"] += 1
        _collector["freeze"] = _collector["freeze"] or freeze


def release_collector() -> None:
    with _collector_lock:
        _collector["holders"] -= 1
        if _collector["holders"] == 0:
            if _collector["freeze"]:
                gc.freeze()
            if _collector["was_enabled"]:
                gc.enable()


@contextmanager
def long_lived_objects() -> Iterator[None]:
    """Hold Python's cyclic collector off while a worker makes objects that will live as long as
    the model (a checkpoint's tensors and report, the statistics of every tensor), then move
    everything alive out of every later collection's walk (``gc.freeze``).

    The collector holds the GIL for its whole pass: passes over the 10^6 objects of a checkpoint
    of 100,000 tensors froze the window for 0.1-0.7 s each, several times. What is frozen is
    still freed by reference counting; a dropped model is (the workers keep no cycle holding
    one: see ``TaskWorker._on_thread_finished``).
    """
    hold_collector(freeze=True)
    try:
        yield
    finally:
        release_collector()


# How long a replaced model may take to go (a cancelled worker still holding it finishes first).
FREED_WITHIN_MS = 5000


def expect_freed(model: object, owner: QObject) -> None:
    """``model`` was replaced: reference counting frees it, frozen or not, unless a reference
    cycle holds it (a module whose hook is its own bound method), which the collector never
    walks while it is frozen. Then everything frozen goes back to the collector, which runs a
    full pass at once (~0.5 s for 10^6 objects; before a later freeze takes the cycle in again)
    rather than the model staying in memory for good. The check ends with ``owner`` (the
    window's state): a window closed meanwhile unfreezes nothing another one froze."""
    try:
        ref = weakref.ref(model)
    except TypeError:
        return

    def check() -> None:
        if ref() is not None:
            gc.unfreeze()
            gc.collect()

    QTimer.singleShot(FREED_WITHIN_MS, owner, check)


class WorkerState(TaskState):
    """A TaskState that can also hand partial results to the GUI while the work goes on."""

    def __init__(
        self,
        on_progress: Callable[[float, str], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(on_progress)
        self._on_partial = on_partial

    def deliver(self, partial: Any) -> None:
        """Send ``partial`` to the GUI thread now (``TaskWorker.partial``)."""
        self.check()
        if self._on_partial is not None:
            self._on_partial(partial)


class _Runner(QThread):
    progressed = Signal(float, str)
    partial = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    was_cancelled = Signal()

    def __init__(self, fn: Callable[[WorkerState], Any], what: str) -> None:
        super().__init__()
        self.fn = fn
        self.what = what
        self._last_emit = 0.0
        self.state: WorkerState | None = WorkerState(self._progress, self.partial.emit)

    def _progress(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - self._last_emit >= PROGRESS_INTERVAL_S:
            self._last_emit = now
            self.progressed.emit(fraction, message)

    def run(self) -> None:
        # Two torch threads were several times slower than one when another process competes.
        torch.set_num_threads(1)
        state = self.state
        assert state is not None, "a runner runs once"
        # No collection in a worker thread: it would finalize whatever Qt objects have become
        # garbage (a closed dialog, a plot's menu) off the GUI thread, and Qt deadlocked against
        # the GUI thread (the suite hung in a paint while a worker building an init's commands
        # collected a QMenu). Released on the GUI thread, so that the next collection runs there.
        hold_collector()
        try:
            self._run(state)
        finally:
            app = QCoreApplication.instance()
            if app is None:
                release_collector()
            else:
                QTimer.singleShot(0, app, release_collector)

    def _run(self, state: WorkerState) -> None:
        try:
            result = self.fn(state)
        except Cancelled:
            self.was_cancelled.emit()
            return
        except ParamscopeError as exc:
            self.failed.emit(str(exc))
            return
        except Exception as exc:  # a worker must never take the window down
            self.failed.emit(f"{self.what}: {type(exc).__name__}: {exc}")
            return
        if state.cancelled:
            self.was_cancelled.emit()
        else:
            self.succeeded.emit(result)


class TaskWorker(QObject):
    """Runs one task at a time; starting a new one cancels the old one, whose results are dropped.

    Signals:
        started(str): work began (what it is).
        progress(float, str): fraction done in [0, 1] and what is being worked on.
        partial(object): a partial result the task delivered (``WorkerState.deliver``).
        finished(object): the task's return value.
        failed(str): a one-line message.
        cancelled(): the task stopped because :meth:`cancel` was called.
        done(): after any of finished, failed or cancelled.
    """

    started = Signal(str)
    progress = Signal(float, str)
    partial = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    done = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._runner: _Runner | None = None
        self._retired: list[_Runner] = []  # cancelled runners still finishing; kept alive until then

    @property
    def is_running(self) -> bool:
        return self._runner is not None

    @property
    def what(self) -> str:
        return self._runner.what if self._runner is not None else ""

    def start(self, fn: Callable[[WorkerState], Any], what: str = "working") -> None:
        """Run ``fn(state)`` in a thread. A task still running is cancelled first."""
        self.cancel()
        runner = _Runner(fn, what)
        # Qt owns the thread object, not Python, and deletes it once its thread has ended (Qt's
        # recipe): a worker freed mid-task (its dialog or owner deleted) dropped the last Python
        # reference and the QThread was deleted while still running: a segmentation fault.
        app = QCoreApplication.instance()
        if app is not None:
            runner.setParent(app)
        # Bound methods of this QObject: Qt queues them to the GUI thread; sender() names the runner.
        runner.progressed.connect(self._on_progress)
        runner.partial.connect(self._on_partial)
        runner.succeeded.connect(self._on_succeeded)
        runner.failed.connect(self._on_failed)
        runner.was_cancelled.connect(self._on_cancelled)
        runner.finished.connect(self._on_thread_finished)
        runner.finished.connect(runner.deleteLater)  # (after the line above: sender() stays valid there)
        self._runner = runner
        self.started.emit(what)
        runner.start()

    def cancel(self) -> None:
        """Ask the running task to stop; its later signals are ignored. Returns at once."""
        runner = self._runner
        if runner is None or runner.state is None:
            return
        runner.state.cancel()
        self._runner = None
        self._retired.append(runner)
        self.cancelled.emit()
        self.done.emit()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until every thread this worker started has ended (e.g. when the window closes)."""
        runners = [r for r in [self._runner, *self._retired] if r is not None]
        return all(r.wait(timeout_ms) for r in runners)

    def cancel_and_wait(self, timeout_ms: int = 30_000) -> bool:
        self.cancel()
        return self.wait(timeout_ms)

    @Slot(float, str)
    def _on_progress(self, fraction: float, message: str) -> None:
        if self.sender() is self._runner:  # a cancelled or replaced task's news is stale
            self.progress.emit(fraction, message)

    @Slot(object)
    def _on_partial(self, partial: Any) -> None:
        if self.sender() is self._runner:
            self.partial.emit(partial)

    @Slot(object)
    def _on_succeeded(self, result: Any) -> None:
        if self._retire(self.sender()):
            self.finished.emit(result)
            self.done.emit()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._retire(self.sender()):
            self.failed.emit(message)
            self.done.emit()

    @Slot()
    def _on_cancelled(self) -> None:
        if self._retire(self.sender()):
            self.cancelled.emit()
            self.done.emit()

    def _retire(self, runner: QObject) -> bool:
        if runner is not self._runner or self._runner is None:
            return False
        self._retired.append(self._runner)  # the QThread object must outlive its thread
        self._runner = None
        return True

    @Slot()
    def _on_thread_finished(self) -> None:
        runner = self.sender()
        for kept in list(self._retired):
            if kept is runner:
                self._retired.remove(kept)
                # The state calls back into the runner: a cycle that only the collector freed, and
                # with it the task and what it holds (a whole model: see long_lived_objects).
                kept.state = None
