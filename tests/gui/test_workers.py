"""The generic worker: results, progress, failures and cancel arrive as signals in the GUI thread."""

from __future__ import annotations

import threading

import torch
from PySide6.QtCore import QThread

from paramscope.core.errors import SourceError
from paramscope.core.tasks import SliceState
from paramscope.gui.workers import TaskWorker, WorkerState


def test_result_and_progress_arrive_in_gui_thread(qtbot):
    worker = TaskWorker()
    seen: list[tuple[float, str]] = []
    threads: list[object] = []
    worker.progress.connect(lambda f, m: (seen.append((f, m)), threads.append(QThread.currentThread())))

    def task(state: WorkerState) -> tuple[int, int]:
        state.progress(1.0, "all")
        return torch.get_num_threads(), threading.get_ident()

    with qtbot.waitSignal(worker.finished, timeout=10_000) as blocker:
        worker.start(task, "test")
    num_threads, ident = blocker.args[0]
    assert num_threads == 1  # the worker runs torch single-threaded
    assert ident != threading.get_ident()  # ... off the GUI thread
    qtbot.waitUntil(lambda: bool(seen))
    assert seen[-1] == (1.0, "all")
    assert all(t is QThread.currentThread() for t in threads)
    assert not worker.is_running
    worker.wait()


def test_failure_is_a_message(qtbot):
    worker = TaskWorker()

    def broken(state: WorkerState) -> None:
        raise SourceError("x.pt: truncated")

    with qtbot.waitSignal(worker.failed, timeout=10_000) as blocker:
        worker.start(broken)
    assert blocker.args == ["x.pt: truncated"]

    def crashing(state: WorkerState) -> None:
        raise ZeroDivisionError("boom")

    with qtbot.waitSignal(worker.failed, timeout=10_000) as blocker:
        worker.start(crashing, "statistics")
    assert blocker.args == ["statistics: ZeroDivisionError: boom"]
    worker.wait()


def test_cancel_stops_the_task_and_drops_its_results(qtbot):
    worker = TaskWorker()
    started = threading.Event()
    stopped = threading.Event()
    results: list[object] = []
    worker.finished.connect(results.append)

    def endless(state: WorkerState) -> None:
        started.set()
        try:
            while True:
                state.check()
                state.deliver("partial")
                QThread.msleep(1)
        finally:
            stopped.set()

    worker.start(endless)
    assert started.wait(10)
    with qtbot.waitSignal(worker.cancelled, timeout=1_000):
        worker.cancel()
    assert worker.wait(10_000)
    assert stopped.is_set()
    assert results == []
    assert not worker.is_running


def test_partial_results_and_slices(qtbot):
    worker = TaskWorker()
    parts: list[object] = []
    progress: list[float] = []
    worker.partial.connect(parts.append)
    worker.progress.connect(lambda f, _m: progress.append(f))

    def task(state: WorkerState) -> str:
        for i in range(2):
            part = SliceState(state, i / 2, (i + 1) / 2)
            part.progress(1.0, f"half {i}")
            state.deliver(i)
        return "ok"

    with qtbot.waitSignal(worker.finished, timeout=10_000):
        worker.start(task)
    qtbot.waitUntil(lambda: parts == [0, 1])
    assert progress[-1] == 1.0
    worker.wait()


def test_no_collection_runs_in_a_worker_thread(qtbot):
    """A collection in a worker finalized Qt objects that had become garbage (a plot's menu) off
    the GUI thread, and Qt deadlocked against the GUI thread: the full test suite hung in a paint
    while a worker building an init's commands collected."""
    import gc

    collected_in: list[int] = []

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            collected_in.append(threading.get_ident())

    def make_cycles(state: WorkerState) -> int:
        for _ in range(20_000):  # far past a generation-0 threshold
            cycle: list[object] = []
            cycle.append(cycle)
        return threading.get_ident()

    thresholds = gc.get_threshold()
    gc.set_threshold(100, 10, 10)
    gc.callbacks.append(on_gc)
    try:
        worker = TaskWorker()
        with qtbot.waitSignal(worker.finished, timeout=10_000) as blocker:
            worker.start(make_cycles, "cycles")
        worker.wait()
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*thresholds)
    assert blocker.args[0] not in collected_in
    qtbot.waitUntil(gc.isenabled)  # the GUI thread collects again once no worker runs


_FREED_MID_TASK = """
import gc, time
from PySide6.QtCore import QCoreApplication, QObject
from paramscope.gui.workers import TaskWorker
app = QCoreApplication([])
def task(state):
    time.sleep(0.002)
    return 1
for i in range(100):
    owner = QObject()
    TaskWorker(owner).start(task, "a task")
    del owner  # the owner and its worker are deleted while the task still runs
    gc.collect()
    time.sleep(0.001 * (i % 5))
    app.processEvents()
time.sleep(0.2)
app.processEvents()
print("survived")
"""


def test_a_worker_deleted_while_its_task_runs_does_not_crash():
    """A dialog closed (and deleted) while its worker computes: the QThread object went with the
    last Python reference while its thread still ran, and the process died (SIGSEGV)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _FREED_MID_TASK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "survived", (done.returncode, done.stderr[-2000:])
