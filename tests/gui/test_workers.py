"""The generic worker: results, progress, failures and cancel arrive as signals in the GUI thread."""

from __future__ import annotations

import threading

import torch
from PySide6.QtCore import QThread

from paramscope.core.errors import SourceError
from paramscope.gui.workers import SliceState, TaskWorker, WorkerState


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
