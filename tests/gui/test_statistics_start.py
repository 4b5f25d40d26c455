"""When statistics start: after the window has drawn a new model, not after a fixed delay; and
the compiled loops load at start-up only for a file large enough to pay for them."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QWidget

from paramscope.gui import app as app_module
from paramscope.gui.statistics_worker import FirstPaint


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
    import paramscope.core.tensor_stats as stats_module

    asked: list[int] = []
    monkeypatch.setattr(stats_module.kernels, "AVAILABLE", True)
    monkeypatch.setattr(stats_module.kernels, "loaded", lambda: False)
    monkeypatch.setattr(stats_module.kernels, "load", lambda: asked.append(1) or True)
    monkeypatch.setattr(app_module.gc, "freeze", lambda: None)  # not this test process's objects
    folder = tmp_path / "model"
    folder.mkdir()
    for part in range(2):  # a sharded folder counts all its files
        with open(folder / f"model-0000{part}.safetensors", "wb") as handle:
            handle.truncate(megabytes << 19)  # sparse: half the size each
    assert app_module.source_bytes(str(folder)) == megabytes << 20
    assert app_module.source_bytes("demo:mlp") == 0
    app_module.prepare_compute(str(folder))
    assert bool(asked) == loads
