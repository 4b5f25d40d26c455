"""``paramscope series CKPT...|GLOB|FOLDER [--scheduler ...] [--json]``: how each tensor and module
moved over a run."""

from __future__ import annotations

import argparse
from typing import Any

from paramscope.cli.audit_cmd import add_scheduler_argument
from paramscope.cli.common import add_cache_arguments, fmt_number, terminal_progress
from paramscope.cli.json_out import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoints",
        nargs="+",
        help="a glob ('ckpts/step-*.safetensors', quoted), a folder of checkpoints, or two or more "
        "checkpoints (files, folders, URLs); ordered by the step in their names",
    )
    parser.add_argument("--trust", action="store_true", help="allow files that can run code (pickled modules)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--modules-only", action="store_true", help="in the text table, modules only")
    add_scheduler_argument(parser)
    add_cache_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from paramscope.core.runs.series import compute_series

    with terminal_progress() as state:
        series = compute_series(args.checkpoints, trust=args.trust, state=state, scheduler=args.scheduler)
    if args.json:
        print_json(series.to_dict())
    else:
        print(format_text(series.to_dict(), args.modules_only))
    return 0


_COLUMNS = ("norm", "std", "max_abs", "rel_prev", "rel_first")


def format_text(data: dict[str, Any], modules_only: bool = False) -> str:
    checkpoints = data["checkpoints"]
    out = [f"paramscope series: {len(checkpoints)} checkpoints"]
    labels = []
    for i, c in enumerate(checkpoints):
        label = f"step {c['step']}" if c["step"] is not None else f"#{i + 1}"
        labels.append(label)
        out.append(f"  {label:<12} {c['source']}")
    width = max(len(label) for label in labels)
    sections = [("Modules", data["modules"])] if modules_only else [("Tensors", data["tensors"]), ("Modules", data["modules"])]
    for title, rows in sections:
        out.append("")
        out.append(title)
        for row in rows:
            shape = "" if row["shape"] is None else " [" + ", ".join(map(str, row["shape"])) + "] " + str(row["dtype"])
            out.append(f"  {row['name']}{shape}")
            out.append(
                f"    {'':<{width}} {'norm':>10} {'std':>10} {'max|w|':>10} {'NaN':>6} {'Inf':>6} {'Δprev':>10} {'Δfirst':>10}"
            )
            for label, point in zip(labels, row["steps"], strict=True):
                if point is None:
                    out.append(f"    {label:<{width}} (absent)")
                    continue
                numbers = " ".join(fmt_number(point[key]) for key in _COLUMNS[:3])
                changes = " ".join(fmt_number(point[key]) for key in _COLUMNS[3:])
                out.append(f"    {label:<{width}} {numbers} {point['nan']:>6} {point['inf']:>6} {changes}")
    return "\n".join(out)
