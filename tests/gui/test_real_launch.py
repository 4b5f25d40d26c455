"""The window as people launch it: the real ``python -m paramscope`` on a real X server.

Xvfb (the xcb platform, not offscreen) with a window manager (openbox), at 1280x800 and
1024x700. Inside the app, tests/gui/selftest_walk.py (PARAMSCOPE_SELFTEST) walks the tutorial
through the real widgets, measures the layout and takes screenshots of the whole screen.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
APP = HERE.parents[1] / "app"

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("openbox") is None,
    reason="needs Xvfb and openbox (apt-get install xvfb openbox; .ci/run installs them)",
)


def _free_display() -> int:
    for number in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError("no free X display number")


@pytest.fixture
def x_display(request):
    """Start Xvfb at the requested size, with openbox managing windows; yields the env."""
    width, height = request.param
    number = _free_display()
    server = subprocess.Popen(
        ["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=f":{number}", QT_QPA_PLATFORM="xcb")
    for _ in range(100):
        if Path(f"/tmp/.X11-unix/X{number}").exists():
            break
        time.sleep(0.05)
    manager = subprocess.Popen(["openbox"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        yield env, (width, height)
    finally:
        manager.terminate()
        server.terminate()
        manager.wait(10)
        server.wait(10)


def _launch(env: dict, tmp_path: Path) -> dict:
    out = tmp_path / "out"
    out.mkdir()
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join(p for p in (str(APP), env.get("PYTHONPATH", "")) if p),
        "PARAMSCOPE_SELFTEST": str(HERE / "selftest_walk.py"),
        "PARAMSCOPE_SELFTEST_OUT": str(out),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # a fresh user: no saved geometry
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "paramscope"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    keep = os.environ.get("PARAMSCOPE_KEEP_SCREENSHOTS")
    if keep:
        target = Path(keep) / tmp_path.name
        shutil.copytree(out, target, dirs_exist_ok=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("x_display", [(1280, 800), (1024, 700)], indirect=True, ids=["1280x800", "1024x700"])
def test_real_launch_layout(x_display, tmp_path):
    env, (width, height) = x_display
    results = _launch(env, tmp_path)
    assert results["org"] == "paramscope" and results["stylesheet"]
    stages = results["stages"]
    assert set(stages) >= {"start", "after_backward", "after_preview", "deep_model", "deep_backward", "long_names_backward"}
    start = stages["start"]
    assert start["fits_screen"], (start["window"], start["screen"])
    assert start["histogram_shown"], "a tensor is selected at once"
    for name, stage in stages.items():
        assert stage["plot_background"] == stage["palette_base"], name
        assert not stage["clipped_buttons"], (name, stage["clipped_buttons"])
        assert not stage["horizontal_scrollbars"], (name, stage["horizontal_scrollbars"])
        assert stage["plot_size"][0] >= 300 and stage["plot_size"][1] >= 150, (name, stage["plot_size"])
        # The Initialize and Backward panels keep their width after running backward / preview.
        assert stage["right_dock_width"] == start["right_dock_width"], (name, stage["right_dock_width"])
