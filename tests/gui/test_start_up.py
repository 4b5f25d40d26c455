"""The start-up path: the command line's file is read while the window builds, statistics start
after the window has drawn the model (no fixed delay), and the compiled loops load at start-up
only for a file large enough to pay for them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QWidget
from safetensors.torch import save_file

from paramscope.gui.app import app as app_module
from paramscope.gui.app.opening import open_ahead
from paramscope.gui.app.statistics_worker import FirstPaint


class CountingWidget(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        self.paints += 1
        super().paintEvent(event)


def test_statistics_wait_for_the_next_paint_of_a_visible_window(qtbot) -> None:
    widget = CountingWidget()
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    first = FirstPaint(widget)
    seen: list[int] = []
    first.painted.connect(lambda: seen.append(widget.paints))
    before = widget.paints
    first.wait()
    assert seen == []  # not before the window has drawn
    with qtbot.waitSignal(first.painted, timeout=5000):
        widget.update()
    assert seen and seen[0] > before  # the paint happened first
    assert first.window.isVisible()


def test_statistics_start_at_once_without_a_visible_window(qtbot) -> None:
    hidden = QWidget()
    qtbot.addWidget(hidden)
    for first in (FirstPaint(None), FirstPaint(hidden)):
        with qtbot.waitSignal(first.painted, timeout=100):
            first.wait()


@pytest.mark.parametrize("megabytes, loads", [(500, False), (1200, True)])
def test_a_large_file_loads_the_compiled_loops_behind_the_splash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, megabytes: int, loads: bool
) -> None:
    """GPT-2 (500 MB) opens without waiting ~0.7 s for numba; a GiB-sized file loads it
    before the window shows, where its GIL-holding load stalls nothing."""
    from paramscope.core.model import kernels

    asked: list[int] = []
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    monkeypatch.setattr(kernels, "loaded", lambda: False)
    monkeypatch.setattr(kernels, "load", lambda: asked.append(1) or True)
    folder = tmp_path / "model"
    folder.mkdir()
    for part in range(2):  # a sharded folder counts all its files
        with open(folder / f"model-0000{part}.safetensors", "wb") as handle:
            handle.truncate(megabytes << 19)  # sparse: half the size each
    assert app_module.source_bytes(str(folder)) == megabytes << 20
    assert app_module.source_bytes("demo:mlp") == 0
    app_module.prepare_compute(str(folder))
    assert bool(asked) == loads


def test_the_window_takes_the_file_read_ahead_without_reading_it_again(window, qtbot, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.ones(2)}, str(path))
    ahead = open_ahead(str(path))
    assert ahead is not None
    session = ahead.future.result(timeout=60)
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        assert window.open_source(str(path), ahead=ahead)
    assert window.state.session is session  # the very session read ahead, not a second read
    assert window.state.session.summary("layer.weight").stats.max == 5.0


def test_a_file_that_fails_ahead_fails_in_the_window(window, qtbot, tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    ahead = open_ahead(str(path))
    assert ahead is not None
    with qtbot.waitSignal(window.errorShown, timeout=60_000) as shown:
        window.open_source(str(path), ahead=ahead)
    assert "broken.safetensors" in shown.args[0]
    assert not window.state.has_session


def test_demos_and_missing_files_are_not_read_ahead(tmp_path: Path) -> None:
    assert open_ahead("demo:mlp") is None  # runs code: on the GUI thread
    assert open_ahead(str(tmp_path / "missing.safetensors")) is None  # fails at once, in the window


GC_SELFTEST = """
import gc
import time
from PySide6.QtCore import QTimer

young = []  # objects in the generations each collection after the open walked (GIL held)

def _on_collection(phase, info):
    if phase == "start" and window.state.has_session:
        young.append(sum(len(gc.get_objects(g)) for g in range(min(info["generation"], 1) + 1)))

gc.callbacks.append(_on_collection)

deadline = time.monotonic() + 30  # collection back on by then, or the check fails below

def _check():
    # (the statistics of a small file may all be in before the open has ended: wait for it)
    if window.state.has_session and window.statistics.complete and (gc.isenabled() or time.monotonic() > deadline):
        model = window.state.session.model  # frozen objects are not in gc.get_objects()
        collectable = any(o is model for o in gc.get_objects())
        print("collecting", gc.isenabled(), "frozen", gc.get_freeze_count() > 0, "model", collectable, flush=True)
        print("first young collection", young[0] if young else 0, flush=True)
        app.exit(0)
    else:
        QTimer.singleShot(10, _check)

_check()
"""


@pytest.mark.parametrize("source", ["file", "demo:mlp"])
def test_the_command_collects_garbage_again_once_the_model_is_open(tmp_path: Path, source: str) -> None:
    """Collection is off while the app starts (launch), then on for good, with start-up objects
    and what the first open made frozen; for a file read in a worker and for a demo opened on
    the GUI thread. (A replaced model is still freed, see tests/gui/test_open_many.py.)"""
    import os
    import subprocess
    import sys

    path = tmp_path / "model.safetensors"
    save_file({f"layers.{i}.weight": torch.ones(2) for i in range(3000)}, str(path))
    spec = str(path) if source == "file" else source
    script = tmp_path / "check.py"
    script.write_text(GC_SELFTEST)
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "PARAMSCOPE_SELFTEST": str(script),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", spec], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "collecting True frozen True" in done.stdout
    # What the window made for the model (its rows) while collection was off is frozen before
    # collection comes back: the first collection walked it all on the GUI thread (~7 objects
    # per tensor, 0.33 s at 100,000 tensors)
    young = int(done.stdout.split("first young collection ")[1].split()[0])
    assert young < 3000
