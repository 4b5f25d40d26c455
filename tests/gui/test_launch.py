"""Start-up: a splash is on screen before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """
    import sys, types
    seen = {}

    def run_app(source, weights=None, trust=False, screenshot=None, on_shown=None, **options):
        from PySide6.QtWidgets import QApplication
        splashes = [w for w in QApplication.topLevelWidgets() if w.objectName() == "paramscopeSplash"]
        seen["splash_visible"] = any(w.isVisible() and w.windowHandle().isExposed() for w in splashes)
        seen["torch_loaded_before"] = "torch" in sys.modules
        import gc
        seen["collecting_during_start"] = gc.isenabled()
        on_shown()
        seen["splash_closed"] = not any(w.isVisible() for w in splashes)
        return 0

    # Stand in for the heavy app module, to see what was on screen when it was needed.
    sys.modules["paramscope.gui.app.app"] = types.SimpleNamespace(run_app=run_app)
    from paramscope.cli import main
    assert main(["demo:mlp"]) == 0
    print(seen)
    """
)


def test_splash_shows_before_torch_is_imported() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "'splash_visible': True" in done.stdout
    assert "'torch_loaded_before': False" in done.stdout
    assert "'collecting_during_start': False" in done.stdout  # ~0.15 s a full collection
    assert "'splash_closed': True" in done.stdout


SETUP_PROBE = textwrap.dedent(
    """
    import sys
    from paramscope.gui.app.app import ensure_app
    from paramscope.gui.app.launch import make_application
    from PySide6.QtGui import QPalette
    from PySide6.QtCore import QSettings
    import pyqtgraph as pg
    first = make_application()  # what the splash creates before torch loads
    app = ensure_app()          # what run_app and explore() call later: the same set-up
    assert app is first
    base = app.palette().color(QPalette.ColorRole.Base)
    print("org", QSettings().organizationName(), QSettings().applicationName())
    print("style", len(app.styleSheet()) > 0)
    print("plot", pg.mkColor(pg.getConfigOption("background")) == base)
    print("gil", round(sys.getswitchinterval() * 1e6), "us")
    """
)


def test_every_entry_point_gets_the_apps_look(tmp_path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SETUP_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "org paramscope paramscope" in done.stdout
    assert "style True" in done.stdout
    assert "plot True" in done.stdout
    # The GUI thread gets the GIL back from a computing worker within 0.2 ms, not Python's 5 ms:
    # opening 100,000 tensors stalled the window 0.8 s instead of 0.16 s (bench gui_open_many).
    assert "gil 200 us" in done.stdout


LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /x/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibweird.so.2 => not found
"""


def test_missing_xcb_libraries_are_named_as_packages() -> None:
    from paramscope.gui.app.launch import missing_from_ldd, missing_libraries_message

    missing = missing_from_ldd(LDD_OUTPUT)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libweird.so.2"]
    message = missing_libraries_message(missing)
    assert "\n" not in message
    assert "apt-get install libxcb-icccm4 libxcb-keysyms1 libweird.so.2" in message


def test_platform_check_is_skipped_offscreen_and_runs_for_xcb(monkeypatch) -> None:
    from paramscope.core.errors import ParamscopeError
    from paramscope.gui.app import launch

    calls = []
    monkeypatch.setattr(
        launch.subprocess, "run", lambda *a, **k: calls.append(a) or subprocess.CompletedProcess(a, 0, LDD_OUTPUT, "")
    )
    monkeypatch.setattr(launch.sys, "platform", "linux")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    launch.check_platform_plugin()
    assert not calls
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(launch, "display_reachable", lambda display: True)  # (no X server in CI)
    try:
        launch.check_platform_plugin()
    except ParamscopeError as exc:
        assert "libxcb-keysyms1" in str(exc)
    else:
        raise AssertionError("missing libraries were not reported")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11's DISPLAY: Linux")
def test_no_display_is_one_line_not_an_abort() -> None:
    """Over ssh without -X Qt printed six lines blaming xcb-cursor0 and aborted (core dumped)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([sys.executable, "-m", "paramscope", "demo:mlp"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["paramscope: no display to open the window on (DISPLAY is not set): run it in "
                                                "a desktop session or over ssh -X, or use the command line (paramscope inspect "
                                                "SOURCE; paramscope --help)"]  # fmt: skip


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11's DISPLAY: Linux")
def test_a_display_nobody_answers_is_one_line_not_an_abort() -> None:
    """A stale DISPLAY (tmux after the ssh -X session ended): Qt aborted the process."""
    import socket

    from paramscope.gui.app.launch import display_reachable

    number = next(n for n in range(7000, 7100) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:  # an X server's abstract socket
        server.bind(f"\0/tmp/.X11-unix/X{number}")
        server.listen(1)
        assert display_reachable(f":{number}") is True and display_reachable(f"unix:{number}.0") is True
    assert display_reachable(f":{number}") is False and display_reachable("what/ever:0") is None
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DISPLAY"] = f":{number}"
    done = subprocess.run([sys.executable, "-m", "paramscope", "demo:mlp"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"paramscope: cannot connect to the display ':{number}' (DISPLAY): no X server answers there")


def test_command_line_asks_torch_for_one_thread() -> None:
    probe = "from paramscope.cli import one_torch_thread; one_torch_thread(); import torch; print(torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
