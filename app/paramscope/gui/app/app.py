"""Starting the GUI: the QApplication, the first source, and ``--screenshot`` rendering."""

from __future__ import annotations

import gc
import os
import runpy
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication

from paramscope.core.errors import ParamscopeError
from paramscope.core.sources.sources import open_source
from paramscope.gui.app.opening import open_ahead

if TYPE_CHECKING:  # imported in run_app, while the command line's file is read
    from paramscope.gui.app.main_window import MainWindow
    from paramscope.gui.state import AppState

SELFTEST_ENV = "PARAMSCOPE_SELFTEST"
SCREENSHOT_SIZE = (1600, 1000)  # the default window size; the layout also works at 1280x800
# A screenshot never hangs a script: after this long it is taken with what statistics there are.
SCREENSHOT_TIMEOUT_MS = 300_000
# How often a running thread hands the GIL over. Each call the GUI thread makes into Python (a
# table cell's data, a plot's paint) waits for the GIL while a worker computes, by default up to
# 5 ms: a repaint of hundreds of cells stalled the window 0.7-0.9 s opening 100,000 tensors.
# Every 0.2 ms: 0.15-0.16 s, the work itself no slower (bench gui_open_many, 2 cores).
GIL_SWITCH_S = 0.0002


def ensure_app() -> QApplication:
    """The running QApplication set up as paramscope's (see :func:`launch.make_application`),
    with plots coloured from its palette. Every entry point comes through here.
    """
    import pyqtgraph as pg

    from paramscope.gui.app.launch import make_application
    from paramscope.gui.palette import follow_system

    app = make_application()
    sys.setswitchinterval(GIL_SWITCH_S)  # see GIL_SWITCH_S
    pg.setConfigOptions(antialias=True)
    follow_system(app)  # plot colours from the palette, now and after every theme change
    return app  # type: ignore[return-value]


def calm_torch() -> None:
    """One torch thread: a second OpenMP thread made statistics several times slower whenever
    another process ran (GPT-2 inspect: 6.8 s with two threads, 2.6 s with one).
    ``OMP_NUM_THREADS`` set by the user wins.
    """
    import os

    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))


def source_bytes(source: str) -> int:
    """Bytes on disk of a local file, or of the files directly in a folder; 0 if unknown."""
    path = Path(source)
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    except OSError:
        pass
    return 0


def freeze_start_up() -> None:
    """Exempt the objects start-up made from garbage collection, for good.

    torch and Qt leave ~10^5 long-lived objects (numba ~10^6): a full collection walking them
    took ~300 ms of GIL in the middle of the statistics. Called before the first file is read:
    its objects must stay collectable (a frozen cycle holding tensors would never be freed).
    No collection first: it found nothing to free and cost ~0.2 s.
    """
    gc.freeze()


def prepare_compute(source: str | None = None) -> None:
    """Load the compiled loops while the splash shows if ``source`` is a large file.

    They cost ~0.7 s to load and pay for it only from about a GiB of float32 values (see
    :func:`paramscope.core.model.tensor_stats.prefer_compiled`); loaded later, in the statistics worker,
    they hold the GIL for ~200 ms and stall the window once, so a large file loads them here.
    """
    from paramscope.core.model.tensor_stats import prefer_compiled

    if source is not None:
        prefer_compiled(source_bytes(source) // 4)  # as if all float32: a large file loads them


def run_app(
    source: str,
    weights: str | None = None,
    trust: bool = False,
    screenshot: str | None = None,
    on_shown: Callable[[], object] | None = None,
    series: list[str] | None = None,
    **options: str | None,
) -> int:
    """Open the window on ``source`` (or the Series view on ``series``); with ``screenshot``,
    render it to that PNG and exit.

    ``options``: ``strip_prefix``, ``entry`` and ``weights_entry`` as ``open_source`` takes them.

    A bad source with ``screenshot`` raises ParamscopeError (the CLI prints it and exits 2);
    interactively the window says so in one line and stays empty; a file that can run code asks
    first (Open anyway / Cancel).
    """
    if screenshot is not None:
        from paramscope.gui.app.main_window import MainWindow

        opened = open_source(source, trust=trust, weights=weights, **options)  # errors go to the CLI
        target = Path(screenshot)
        if not target.parent.is_dir():
            raise ParamscopeError(f"{screenshot}: folder {target.parent} does not exist")
        app = ensure_app()
        calm_torch()
        window = MainWindow(interactive=False)
        window.open_model(opened)
        return render_screenshot(app, window, target)

    calm_torch()
    freeze_start_up()
    ahead = open_ahead(source, trust=trust, weights=weights, **options)  # read while the window builds
    from paramscope.gui.app.main_window import MainWindow

    app = ensure_app()
    prepare_compute(source)
    window = MainWindow()
    window.fit_to_screen()  # a fresh window fits the screen; a saved geometry wins below
    window.restore_settings()  # geometry and dock layout of the last run; saved again on close
    window.show()
    if on_shown is not None:  # e.g. close the splash
        on_shown()
    if series:
        gc.enable()  # launch() turned it off for the start-up; no file is being read ahead
        window.series_view.open_series(series, trust=trust, open_latest=True)
    else:
        # The window's own way of opening: a file that can run code asks Open anyway / Cancel, and
        # an error is one line in the window (no other model is opened in its place).
        if not gc.isenabled():  # launch() turned it off for the start-up; opening wants it off
            window.opener.opened.connect(_enable_gc, Qt.ConnectionType.SingleShotConnection)
        window.open_source(source, trust=trust, weights=weights, ahead=ahead, **options)
    schedule_selftest(app, window)
    return app.exec()


def _enable_gc(_ok: bool) -> None:
    # What is alive now is the window and the model just opened, made while collection was off:
    # frozen first, as the workers freeze what they make (workers.long_lived_objects). Else the
    # first collection walks all of it on the GUI thread (0.33 s at 100,000 tensors).
    gc.freeze()
    gc.enable()


def schedule_selftest(app: QApplication, window: MainWindow) -> None:
    """With ``PARAMSCOPE_SELFTEST=script.py``, run that script once the window is up.

    The end-to-end tests start the real command on a real X display and drive the real widgets
    from inside (``window`` and ``app`` are the script's globals); the script quits the app.
    A failing script exits with code 3 and its traceback on stderr (a test, not a user, reads it).
    """
    script = os.environ.get(SELFTEST_ENV)
    if not script:
        return

    def run() -> None:
        try:
            runpy.run_path(script, init_globals={"window": window, "app": app}, run_name="__selftest__")
        except BaseException:  # noqa: BLE001 - the test reads the traceback
            traceback.print_exc()
            app.exit(3)

    QTimer.singleShot(0, run)


def most_telling_parameter(state: AppState) -> str:
    """The first parameter whose values vary (a constant one shows a single bar)."""
    session = state.session
    for name in session.report.parameters:
        summary = session.summary(name)
        if summary is not None and summary.stats.std:
            return name
    return next(iter(session.report.parameters))


def render_screenshot(
    app: QApplication,
    window: MainWindow,
    target: Path,
    *,
    size: tuple[int, int] = SCREENSHOT_SIZE,
    prepare=None,
) -> int:
    """Wait until the statistics are done (a signal), select the first parameter, grab, save.

    ``prepare(window)``, when given, runs instead of selecting the first parameter (the
    README's screenshot script uses it to show a particular tab, selection or backward pass).
    """
    window.resize(*size)
    window.show()
    result = {"code": 1}
    taken = {"done": False}

    def shoot() -> None:
        if taken["done"]:
            return
        taken["done"] = True
        state = window.state
        if prepare is not None:
            prepare(window)
        elif state.has_session and state.session.report.parameters:
            state.select_tensor(most_telling_parameter(state))
        # Let layouts and the plot settle through one event-loop turn before grabbing.
        QTimer.singleShot(0, lambda: QTimer.singleShot(0, save))

    def save() -> None:
        pixmap = window.grab()
        if pixmap.isNull() or not pixmap.save(str(target), "PNG"):
            print(f"paramscope: {target}: could not write the PNG", file=sys.stderr)
            result["code"] = 2
        else:
            result["code"] = 0
        window.statistics.cancel_and_wait()
        app.quit()

    def on_error(message: str) -> None:
        print(f"paramscope: {message}", file=sys.stderr)
        shoot()  # the window still shows what is known

    window.errorShown.connect(on_error)
    window.statistics.allDone.connect(shoot)
    if window.statistics.complete:
        shoot()
    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, shoot)
    app.exec()
    window.close()
    return result["code"]
