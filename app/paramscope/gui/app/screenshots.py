"""Regenerate the README's screenshots (resources/screenshots/*.png) from the demos.

Run from the repository root (the pictures are not part of the wheel)::

    QT_QPA_PLATFORM=offscreen python -m paramscope.gui.app.screenshots [--out resources/screenshots] [--size 1600x1000]

The first picture comes from the command line exactly as a user would make it
(``python -m paramscope demo:mlp --screenshot ...``); the others drive the same window through
the steps of the README's walkthrough. Each PNG is scaled down to ``--width`` pixels so the
repository stays small (every file under 300 KB). Run it again after any change to the UI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

MAX_BYTES = 300_000


def _wait(signal, timeout_ms: int = 120_000) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()


def _settle(app) -> None:
    for _ in range(5):
        app.processEvents()


def _save(pixmap, target: Path, width: int) -> int:
    from PySide6.QtCore import Qt

    image = pixmap.toImage()
    if image.width() > width:
        image = image.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation)
    image.save(str(target), "PNG", 0)  # quality 0: the strongest PNG compression
    size = target.stat().st_size
    if size > MAX_BYTES:  # detailed windows: fewer colours keep the file small, text stays sharp
        image.convertTo(image.Format.Format_Indexed8, Qt.ImageConversionFlag.ThresholdDither)
        image.save(str(target), "PNG", 0)
        size = target.stat().st_size
    return size


def cli_shot(out: Path, width: int) -> None:
    """``paramscope demo:mlp --screenshot``: the window as it first opens."""
    from PySide6.QtGui import QPixmap

    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "raw.png"
        env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
        subprocess.run([sys.executable, "-m", "paramscope", "demo:mlp", "--screenshot", str(raw)], check=True, env=env)
        size = _save(QPixmap(str(raw)), out / "window.png", width)
    print(f"window.png: {size:,} bytes")


def shot(app, name: str, demo: str, prepare: Callable, out: Path, width: int, size: tuple[int, int]) -> None:
    from paramscope.gui.app.main_window import MainWindow

    window = MainWindow(interactive=False)
    window.resize(*size)
    window.show()
    _settle(app)
    if window.open_source(f"demo:{demo}") and not window.statistics.complete:
        _wait(window.statistics.allDone)
    prepare(window)
    _settle(app)
    written = _save(window.grab(), out / f"{name}.png", width)
    print(f"{name}.png: {written:,} bytes")
    window.statistics.cancel_and_wait()
    window.backward_panel.worker.cancel_and_wait()
    window.close()
    window.deleteLater()
    _settle(app)


# --- the walkthrough's steps ------------------------------------------------------------------
def _initialize(window) -> None:
    """Tutorial: init.normal_(weight, mean=0, std=0.01) on every weight, seen before/after."""
    from paramscope.gui.panels.init_panel import RULE

    window.state.select_module("")
    window.state.select_tensor("0.weight")
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(panel.target_mode.findData(RULE))
    panel.rule_edit.setText("*.weight")
    panel.set_initializer("normal_")
    panel.set_field("std", 0.01)
    panel.apply()
    window.raise_dock(window.init_dock)
    window.histogram_panel.view.zoom_new.setChecked(True)  # the new values, not a sliver at 0


def _backward(window) -> None:
    """Tutorial: the shared Linear's gradient is 6 = 3 + 3."""
    window.state.select_module("")
    window.state.select_tensor("0.weight")
    groups = window.tied_panel.list
    groups.setCurrentItem(groups.topLevelItem(0))
    window.raise_dock(window.tied_dock)
    window.raise_dock(window.backward_dock)
    panel = window.backward_panel
    panel.input_edit.setText("ones(1, 1)")
    with_result = panel.worker.finished
    panel.run_backward()
    _wait(with_result)


def _unregistered(window) -> None:
    """Tutorial: weight2 is a plain tensor attribute, not a Parameter."""
    window.raise_dock(window.diagnostics_dock)
    window.state.select_module("")
    window.state.select_tensor("weight1")


def _heatmap(window) -> None:
    name = max(window.state.session.report.parameters.values(), key=lambda t: t.numel).name
    window.state.select_tensor(name)
    window.tabs.setCurrentWidget(window.heatmap_view)
    window.heatmap_view.refresh()


# --- the real launch path: python -m paramscope demo:X on an X display ---------------------------
SHOTS = {  # name: (demo, prepare, theme)
    "window": ("mlp", None, "light"),
    "initialize": ("mlp", "_initialize", "light"),
    "shared-backward": ("shared", "_backward", "light"),
    "unregistered": ("unregistered", "_unregistered", "light"),
    "heatmap": ("tiny_lm", "_heatmap", "light"),
    "window-dark": ("tiny_lm", "_dark", "dark"),
}


def _dark(window) -> None:
    """The dark theme, with a 2-D weight selected and a preview drawn (plots, tables, editor)."""
    window.state.select_tensor(max(window.state.session.report.parameters.values(), key=lambda t: t.numel).name)


def real_shot(name: str, out: Path, width: int) -> None:
    """Start ``python -m paramscope demo:X`` as a user would (the display in $DISPLAY: Xvfb), with
    this module as its self-test script, which prepares the window, grabs it and quits."""
    demo, _prepare, theme = SHOTS[name]
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "paramscope"
        config.mkdir()
        (config / "paramscope.conf").write_text(f"[view]\ntheme={theme}\n")  # as if chosen in View
        raw = Path(folder) / "raw.png"
        env = dict(
            os.environ, PARAMSCOPE_SELFTEST=__file__, PARAMSCOPE_SHOT=name, PARAMSCOPE_SHOT_OUT=str(raw),
            XDG_CONFIG_HOME=folder, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "xcb"),
        )  # fmt: skip
        subprocess.run([sys.executable, "-m", "paramscope", f"demo:{demo}"], check=True, env=env, timeout=300)
        from PySide6.QtGui import QPixmap

        size = _save(QPixmap(str(raw)), out / f"{name}.png", width)
    print(f"{name}.png: {size:,} bytes")


def _in_the_app(window, app) -> None:
    """Inside the launched app (PARAMSCOPE_SELFTEST): wait for statistics, prepare, grab, quit."""
    from PySide6.QtCore import QTimer

    name = os.environ["PARAMSCOPE_SHOT"]
    _demo, prepare, _theme = SHOTS[name]

    def ready() -> None:
        if not (window.state.has_session and window.statistics.complete):
            QTimer.singleShot(50, ready)
            return
        if prepare is not None:
            globals()[prepare](window)
        for _ in range(20):  # a few turns: layouts, plots and the last statistics painted
            _settle(app)
        window.grab().save(os.environ["PARAMSCOPE_SHOT_OUT"])
        app.exit(0)

    ready()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path("resources") / "screenshots"))
    parser.add_argument("--size", default="1600x1000", help="window size WxH (default 1600x1000)")
    parser.add_argument("--width", type=int, default=1200, help="width of the saved PNGs (default 1200)")
    parser.add_argument("--real", action="store_true",
                        help="start the real command for each picture on the X display in $DISPLAY (e.g. Xvfb 1280x800)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.real:
        from PySide6.QtGui import QGuiApplication

        _keep = QGuiApplication.instance() or QGuiApplication([])  # QPixmap needs one  # noqa: F841
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name in SHOTS:
            real_shot(name, out, args.width)
        return 0
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from paramscope.gui.app.app import ensure_app

    app = ensure_app()
    cli_shot(out, args.width)
    shot(app, "initialize", "mlp", _initialize, out, args.width, size)
    shot(app, "shared-backward", "shared", _backward, out, args.width, size)
    shot(app, "unregistered", "unregistered", _unregistered, out, args.width, size)
    shot(app, "heatmap", "tiny_lm", _heatmap, out, args.width, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
elif __name__ == "__selftest__":  # run inside the app by real_shot (window and app are globals)
    _in_the_app(globals()["window"], globals()["app"])
