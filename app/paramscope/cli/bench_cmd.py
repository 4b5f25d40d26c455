"""``paramscope bench``: speed of the app against plain torch/numpy, ratios beside targets."""

from __future__ import annotations

import argparse
import sys

STEP_NAMES = ("statistics", "backward", "initializers", "export", "lazy_open", "gui_stall", "gui_start", "many_tensors")
STEP_NAMES += ("remote_open", "remote_tensor", "audit_cluster", "gui_open_many")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="a small GPT-2-shaped model (CI smoke test)"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--step",
        action="append",
        choices=STEP_NAMES,
        help="run only this step (repeatable); default: all",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the core steps in this process (faster; peak RSS is then cumulative). "
        "Default with --quick",
    )


def _format_row(row) -> str:  # type: ignore[no-untyped-def]
    if row.pending:
        figure = row.pending
    elif row.value is not None:
        figure = row.value
    elif row.ratio is not None:
        figure = f"{row.ratio:7.3g}x  (app {row.app_s:.3f} s, baseline {row.baseline_s:.3f} s)"
    else:
        figure = row.note or "-"
    verdict = {True: "ok", False: "MISSED", None: ""}[row.ok]
    rss = f"peak RSS {row.peak_rss_mb:.0f} MB" if row.peak_rss_mb else ""
    line = f"{row.name:<70} {figure:<48} target {row.target:<9} {verdict:<6} {rss}"
    if row.note and not row.pending and row.value is None or row.note and row.value is not None:
        line += f"\n{'':<4}{row.note}"
    return line


def run(args: argparse.Namespace) -> int:
    from paramscope.cli.json_out import print_json
    from paramscope.core.bench.bench import STEPS, run_bench
    from paramscope.core.bench.bench_model import FULL, QUICK

    cfg = QUICK if args.quick else FULL
    steps = tuple(args.step) if args.step else STEPS
    if not args.json:
        print(
            f"paramscope bench: GPT-2-shaped model (vocab {cfg.vocab}, dim {cfg.dim}, "
            f"{cfg.layers} layers, head tied), one torch thread; each ratio = app / baseline, "
            "best of runs interleaved in the same process",
            flush=True,
        )

    def show(row) -> None:  # type: ignore[no-untyped-def]
        if not args.json:
            print(_format_row(row), flush=True)

    # --quick is a smoke test: one process for the core steps (a subprocess each costs a torch import)
    isolate = not (args.in_process or args.quick)
    rows = run_bench(quick=args.quick, steps=steps, isolate=isolate, on_row=show)
    if args.json:
        print_json(
            {"quick": args.quick, "model": cfg.__dict__, "rows": [r.to_dict() for r in rows]}
        )
    missed = [r for r in rows if r.ok is False]
    if missed and not args.json:
        print(f"{len(missed)} figure(s) above target", file=sys.stderr)
    return 0
