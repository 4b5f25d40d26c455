"""``paramscope bench``: the app's speed against plain torch/numpy, each in the same run.

A GPT-2-small-sized model (124M parameters, head tied to the token embedding) is built in
process, no download. Each step times the app's way and the plain baseline interleaved (best of
a few runs each, one torch thread like the workers) and reports the ratio beside its target.
Steps run in a fresh subprocess each (``python -m paramscope.core.bench.bench STEP``) so that the
peak RSS reported per step is that step's own.

Targets (issue 6): statistics + histograms <= 8x one read of all parameter bytes; initializers
<= 1.1x the bare ``torch.nn.init`` call; backward <= 1.05x a plain forward/backward; export
<= 1.5x ``torch.save`` / ``save_model`` with the read-back check (in a RAM folder where there is
one: see step_export; a row over it says the verify is in the app's time); lazy open <= 1% of an
eager ``torch.load``; longest stall of the window's event loop <= 100 ms.

This module is the registry of steps and the runner; the model is in
:mod:`~paramscope.core.bench.bench_model`, rows and timing in :mod:`~paramscope.core.bench.bench_rows`, the
steps in :mod:`~paramscope.core.bench.bench_steps` (model in memory) and
:mod:`~paramscope.core.bench.bench_files` (export, lazy open).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from paramscope.core.bench.bench_files import step_export, step_lazy_open
from paramscope.core.bench.bench_model import FULL, QUICK, build_gpt2
from paramscope.core.bench.bench_rows import Context, Row, peak_rss_mb
from paramscope.core.bench.bench_steps import step_backward, step_initializers, step_statistics

# The window's stall is measured by paramscope.cli.bench_gui (the core never imports Qt), many tiny
# tensors by paramscope.cli.bench_many (the inspect command end to end).
STEPS = ("statistics", "backward", "initializers", "export", "lazy_open", "gui_stall", "gui_start", "many_tensors")
STEP_MODULES = {"gui_stall": "paramscope.cli.bench_gui", "gui_start": "paramscope.cli.bench_gui", "many_tensors": "paramscope.cli.bench_many"}
# Checkpoints by URL and audits on Dask (issue 18): paramscope.core.bench.bench_remote
STEPS += ("remote_open", "remote_tensor", "audit_cluster")
STEP_MODULES.update(dict.fromkeys(STEPS[-3:], "paramscope.core.bench.bench_remote"))
# The window opening 100,000 tiny tensors (issue 14): paramscope.cli.bench_open
STEPS += ("gui_open_many",)
STEP_MODULES["gui_open_many"] = "paramscope.cli.bench_open"

STEP_FUNCTIONS: dict[str, Callable[[Context], list[Row]]] = {
    "statistics": step_statistics,
    "backward": step_backward,
    "initializers": step_initializers,
    "export": step_export,
    "lazy_open": step_lazy_open,
}


def run_step(step: str, quick: bool) -> list[Row]:
    """Build the model and run one step in this process; rows carry this process's peak RSS."""
    torch.set_num_threads(1)  # as the workers do: two threads lose whenever another process runs
    cfg = QUICK if quick else FULL
    model = build_gpt2(cfg)
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as tmp:
        ctx = Context(model, cfg, quick, repeats=2 if quick else 3, tmp=Path(tmp))
        try:
            rows = STEP_FUNCTIONS[step](ctx)
        except Exception as exc:
            rows = [Row(step, step, "-", pending=f"failed: {type(exc).__name__}: {exc}")]
    peak = peak_rss_mb()
    for row in rows:
        row.peak_rss_mb = peak
    return rows


def run_bench(
    quick: bool = False,
    steps: tuple[str, ...] = STEPS,
    isolate: bool = True,
    on_row: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Every step, each in its own subprocess (``isolate``) so peak RSS is per step.

    Steps measured outside the core (the window's stall) always run in a subprocess.
    """
    rows: list[Row] = []
    for step in steps:
        if isolate or step not in STEP_FUNCTIONS:
            step_rows = run_isolated(step, quick, STEP_MODULES.get(step, "paramscope.core.bench.bench"))
        else:
            step_rows = run_step(step, quick)
        for row in step_rows:
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def run_isolated(step: str, quick: bool, module: str = "paramscope.core.bench.bench") -> list[Row]:
    """Run ``python -m module step [--quick]`` and read the JSON rows it prints."""
    command = [sys.executable, "-m", module, step] + (["--quick"] if quick else [])
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [Row(step, step, "-", pending=f"failed (exit {done.returncode}): {tail}")]
    fields = set(Row.__dataclass_fields__)
    return [Row(**{k: v for k, v in json.loads(line).items() if k in fields}) for line in lines]


def _main(argv: list[str]) -> int:
    step = argv[0]
    for row in run_step(step, quick="--quick" in argv):
        print(json.dumps(row.to_dict()), flush=True)
    return 0


if __name__ == "__main__":  # python -m paramscope.core.bench.bench STEP [--quick]
    raise SystemExit(_main(sys.argv[1:]))
