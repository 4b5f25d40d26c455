"""Opening files never parses on the GUI thread: the window keeps running, then swaps the model."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt, QTimer
from safetensors.torch import save_file

from paramscope.core.errors import Cancelled
from paramscope.core.files import module_tree
from paramscope.core.sources import sources
from paramscope.core.tasks import TaskState
from paramscope.gui.app import opening
from paramscope.gui.app.opening import opens_in_background, recent_files


def _blocking_opener(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event, list[str]]:
    """open_source waits for ``release`` (after setting ``entered``) and records its thread."""
    entered, release = threading.Event(), threading.Event()
    threads: list[str] = []
    real = sources.open_source

    def slow(spec: str, **kwargs):
        threads.append(threading.current_thread().name)
        entered.set()
        assert release.wait(30), "the test never released the opener"
        return real(spec, **kwargs)

    monkeypatch.setattr(opening, "open_source", slow)
    return entered, release, threads


def _checkpoint(tmp_path: Path, name: str = "model.safetensors") -> Path:
    path = tmp_path / name
    save_file({"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.ones(2)}, str(path))
    return path


def test_the_event_loop_runs_while_a_file_opens(window, qtbot, tmp_path: Path, monkeypatch) -> None:
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        assert window.open_source("demo:mlp")
    entered, release, threads = _blocking_opener(monkeypatch)
    path = _checkpoint(tmp_path)
    ticks: list[int] = []
    timer = QTimer(window)
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()
    assert window.open_source(str(path))  # returns at once: the parse runs in a worker
    qtbot.waitUntil(entered.is_set, timeout=10_000)
    assert window.statusBar().currentMessage() == f"Opening {path}…"
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=10_000)  # the GUI thread is free
    assert window.state.session.opened.source == "demo:mlp"  # the old model stays meanwhile
    with qtbot.waitSignal(window.opened, timeout=30_000) as ended:
        release.set()
    timer.stop()
    assert ended.args == [True]
    assert threads and threads[0] != threading.main_thread().name
    session = window.state.session
    assert session.opened.source == str(path)
    assert set(session.report.parameters) == {"layer.weight", "layer.bias"}
    assert window.statusBar().currentMessage() == ""
    assert recent_files()[0] == str(path)


def test_a_failed_open_keeps_the_model_and_shows_one_line(window, qtbot, tmp_path: Path) -> None:
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        assert window.open_source("demo:mlp")
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\xff" * 64)
    with qtbot.waitSignal(window.errorShown, timeout=30_000) as shown, qtbot.waitSignal(window.opened, timeout=30_000) as ended:
        assert window.open_source(str(bad))
    assert ended.args == [False]
    assert str(bad) in shown.args[0] and "\n" not in shown.args[0]
    assert window.state.session.opened.source == "demo:mlp"


def test_a_newer_open_replaces_one_still_running(window, qtbot, tmp_path: Path, monkeypatch) -> None:
    entered, release, _threads = _blocking_opener(monkeypatch)
    first, second = _checkpoint(tmp_path, "a.safetensors"), _checkpoint(tmp_path, "b.safetensors")
    window.open_source(str(first))
    qtbot.waitUntil(entered.is_set, timeout=10_000)
    monkeypatch.setattr(opening, "open_source", sources.open_source)
    with qtbot.waitSignal(window.opened, timeout=30_000) as ended:
        window.open_source(str(second))
    release.set()
    assert ended.args == [True] and window.state.session.opened.source == str(second)
    assert window.opener.worker.wait(30_000)
    assert window.state.session.opened.source == str(second)  # the cancelled one never lands


def test_which_sources_open_in_the_background(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    script = tmp_path / "net.py"
    script.write_text("import torch\nNet = lambda: torch.nn.Linear(2, 2)\n")
    assert opens_in_background(str(path)) and opens_in_background(str(tmp_path))
    assert not opens_in_background("demo:mlp")
    assert not opens_in_background(f"{script}:Net")  # user code may make Qt objects
    assert not opens_in_background(str(tmp_path / "missing.pt"))  # fails at once, here
    assert not opens_in_background("torch.nn:Linear")


def test_file_open_folder_opens_a_model_folder(window, qtbot, tmp_path: Path, monkeypatch) -> None:
    """File > Open folder…: a save_pretrained or torch.distributed.checkpoint folder cannot be
    picked in the file dialog, which selects files."""
    from PySide6.QtWidgets import QFileDialog

    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"layer.weight": torch.ones(2, 3)}, str(folder / "model.safetensors"))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    with qtbot.waitSignal(window.opened, timeout=30_000) as ended:
        window.open_folder_action.trigger()
    assert ended.args == [True]
    assert window.state.session.opened.source == str(folder / "model.safetensors")
    assert "Open folder…" in [a.text().replace("&", "") for a in window.file_menu.actions()]


def _endless_types(entered: threading.Event):
    """A module-type guess that never ends but reports (and so stops on cancel), as a long open."""

    def guess(containers, state=None) -> int:
        entered.set()
        while True:
            state.progress(0.5, "guessing module types")
            time.sleep(0.005)

    return guess


def test_stop_ends_an_open_under_way_and_keeps_the_model(window, qtbot, tmp_path: Path, monkeypatch) -> None:
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        assert window.open_source("demo:mlp")
    entered = threading.Event()
    monkeypatch.setattr(module_tree, "mark_inferred_types", _endless_types(entered))
    path = _checkpoint(tmp_path)
    assert window.open_source(str(path))
    qtbot.waitUntil(entered.is_set, timeout=10_000)
    bar, stop = window.status.opening.progress_bar, window.status.opening.button
    qtbot.waitUntil(lambda: bar.isVisible() and bar.value() > 0, timeout=10_000)  # how far it is
    assert stop.isVisible() and "opening" in window.running_label.text()
    with qtbot.waitSignal(window.opened, timeout=10_000) as ended:
        qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)
    assert ended.args == [False]
    assert window.opener.worker.wait(10_000)  # the open's thread ended, not left reading
    assert window.state.session.opened.source == "demo:mlp"
    assert window.statusBar().currentMessage() == f"Stopped opening {path}; the model shown stays"
    assert not bar.isVisible() and not stop.isVisible() and window.running_label.text() == ""


def test_stop_also_ends_an_open_started_before_the_window(qtbot, tmp_path: Path, monkeypatch) -> None:
    entered = threading.Event()
    monkeypatch.setattr(module_tree, "mark_inferred_types", _endless_types(entered))
    ahead = opening.open_ahead(str(_checkpoint(tmp_path)))
    assert ahead is not None and entered.wait(10)
    passed: list[str] = []
    state = TaskState(lambda _fraction, message: passed.append(message))
    taking = ThreadPoolExecutor(1).submit(opening.take_ahead, ahead, state)
    qtbot.waitUntil(lambda: "guessing module types" in passed, timeout=10_000)  # its progress, passed on
    state.cancel()
    with pytest.raises(Cancelled):
        taking.result(timeout=10)
    assert ahead.state.cancelled
    with pytest.raises(Cancelled):
        ahead.future.result(timeout=10)  # the open ahead stopped too
