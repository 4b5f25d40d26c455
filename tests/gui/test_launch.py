"""Start-up: a splash is on screen before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import sys, types
    seen = {}

    def run_app(source, weights=None, trust=False, screenshot=None, on_shown=None):
        from PySide6.QtWidgets import QApplication, QSplashScreen
        splashes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QSplashScreen)]
        seen["splash_visible"] = any(w.isVisible() for w in splashes)
        seen["torch_loaded_before"] = "torch" in sys.modules
        on_shown()
        seen["splash_closed"] = not any(w.isVisible() for w in splashes)
        return 0

    # Stand in for the heavy app module, to see what was on screen when it was needed.
    sys.modules["paramscope.gui.app"] = types.SimpleNamespace(run_app=run_app)
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
    assert "'splash_closed': True" in done.stdout
