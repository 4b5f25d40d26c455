"""``paramscope SOURCE --screenshot out.png`` from the command line, offscreen."""

from __future__ import annotations

import os
import subprocess
import sys

from PySide6.QtGui import QImage


def run_paramscope(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run(
        [sys.executable, "-m", "paramscope", *args], capture_output=True, text=True, timeout=300, env=env
    )


def test_screenshot_writes_a_png_of_the_window(tmp_path):
    out = tmp_path / "out.png"
    done = run_paramscope("demo:mlp", "--screenshot", str(out))
    assert done.returncode == 0, done.stderr
    image = QImage(str(out))
    assert not image.isNull()
    assert image.width() >= 1000 and image.height() >= 600
    # Not a blank image: the window has content in several colours.
    colours = {image.pixel(x, y) for x in range(0, image.width(), 37) for y in range(0, image.height(), 29)}
    assert len(colours) > 5


def test_screenshot_of_a_bad_source_is_a_one_line_error(tmp_path):
    out = tmp_path / "out.png"
    done = run_paramscope("demo:nope", "--screenshot", str(out))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("paramscope: demo:nope")
    assert not out.exists()
