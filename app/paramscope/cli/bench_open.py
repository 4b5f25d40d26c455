"""The gui_open_many step of ``paramscope bench``: the window opening a checkpoint of 100,000 tiny
tensors, and how long its event loop stalls meanwhile.

Run as ``python -m paramscope.cli.bench_open gui_open_many [--quick] [--tensors N]`` (a subprocess
of the bench, so its peak RSS is its own; --quick: 10,000 tensors). A ``.safetensors`` of tensors
named like a model's (``blocks.{i}.layers.{j}.weight``, as the many_tensors step writes them) is
opened the way File > Open does (parsed in a worker, swapped in on the GUI thread) while a 10 ms
QTimer ticks on the GUI thread; the longest gap between ticks, from the open until every tensor's
statistics are shown, is the stall a user feels. Against it, in the same run and window: the same
for a file of 100 such tensors (what any model costs). Target (issue 14): <= 200 ms.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

STEP = "gui_open_many"
FULL_COUNT = 100_000
QUICK_COUNT = 10_000
SMALL_COUNT = 100
TARGET_MS = 200.0
TICK_MS = 10


def measure_open(window: object, path: Path, timeout_s: float = 600.0) -> tuple[float, float]:
    """(longest gap between ticks in ms, seconds) from ``window.open_source(path)`` until every
    statistic of the file is shown."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    clock = QElapsedTimer()
    last, longest = [0], [0]

    def tick() -> None:
        now = clock.elapsed()
        longest[0] = max(longest[0], now - last[0])
        last[0] = now

    def shown() -> bool:
        state, statistics = window.state, window.statistics  # type: ignore[attr-defined]
        return (
            state.has_session and state.session.opened.source == str(path)
            and statistics.complete and not statistics.is_running
        )  # fmt: skip

    loop = QEventLoop()

    def check() -> None:  # allDone comes before the last batch is painted: checked once it is
        QTimer.singleShot(0, lambda: shown() and loop.quit())

    all_done = window.statistics.allDone  # type: ignore[attr-defined]
    all_done.connect(check)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    ticker = QTimer()
    ticker.setInterval(TICK_MS)
    ticker.timeout.connect(tick)
    start = time.perf_counter()
    clock.start()
    ticker.start()
    window.open_source(str(path))  # type: ignore[attr-defined]
    if not shown():
        loop.exec()
    took = time.perf_counter() - start
    ticker.stop()
    all_done.disconnect(check)
    tick()
    if not shown():
        raise TimeoutError(f"{path.name}: statistics not shown after {timeout_s:.0f} s")
    return float(longest[0]), took


def row(count: int) -> object:
    """The step's row: the stall opening ``count`` tensors, against opening 100."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from safetensors.torch import save_file

    from paramscope.cli.bench_many import many_tensors
    from paramscope.core.bench.bench import Row
    from paramscope.gui.app.app import ensure_app
    from paramscope.gui.app.main_window import MainWindow
    from paramscope.gui.app.settings import settings_of_its_own

    app = ensure_app()
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as folder, settings_of_its_own():
        small, large = Path(folder) / "small.safetensors", Path(folder) / "many.safetensors"
        save_file(many_tensors(SMALL_COUNT), str(small))
        save_file(many_tensors(count), str(large))
        window = MainWindow(interactive=False)
        window.show()
        app.processEvents()
        try:
            base_ms, base_s = measure_open(window, small)
            stall_ms, took = measure_open(window, large)
        finally:
            window.statistics.cancel_and_wait()
            window.close()
    return Row(
        STEP,
        f"longest event-loop stall opening {count:,} tiny tensors (.safetensors) until every statistic shows",
        f"<= {TARGET_MS:.0f} ms",
        1.0,
        app_s=stall_ms / 1000,
        baseline_s=base_ms / 1000,
        value=f"{stall_ms:.0f} ms",
        ratio=stall_ms / TARGET_MS,
        note=f"{TICK_MS} ms ticks on the GUI thread; ratio = stall / {TARGET_MS:.0f} ms; opening and statistics took "
        f"{took:.1f} s; baseline: {SMALL_COUNT} such tensors in the same window, {base_ms:.0f} ms ({base_s:.2f} s)",
    )


def main(argv: list[str]) -> int:
    import torch

    from paramscope.core.bench.bench import Row, peak_rss_mb

    torch.set_num_threads(1)  # as the bench's other steps
    count = QUICK_COUNT if "--quick" in argv else FULL_COUNT
    if "--tensors" in argv:
        count = int(argv[argv.index("--tensors") + 1])
    try:
        found = row(count)
    except Exception as exc:
        found = Row(STEP, STEP, f"<= {TARGET_MS:.0f} ms", pending=f"failed: {type(exc).__name__}: {exc}")
    found.peak_rss_mb = peak_rss_mb()  # type: ignore[attr-defined]
    print(json.dumps(found.to_dict()), flush=True)  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":  # python -m paramscope.cli.bench_open gui_open_many [--quick] [--tensors N]
    raise SystemExit(main(sys.argv[1:]))
