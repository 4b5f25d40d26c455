"""``paramscope audit SOURCE... [--scheduler local:N|tcp://HOST:8786] [--json]``."""

from __future__ import annotations

import argparse
from typing import Any

from paramscope.cli.common import add_cache_arguments, fmt_number, terminal_progress
from paramscope.cli.json_out import print_json


def add_scheduler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        metavar="local:N|tcp://HOST:8786",
        help="compute on a Dask distributed cluster: N local worker processes, or a running scheduler "
        "(workers need paramscope installed and the same paths or URLs); without it nothing of Dask is used",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sources", nargs="+", help="checkpoint files, folders or URLs (each worker reads them itself)")
    add_scheduler_argument(parser)
    parser.add_argument("--trust", action="store_true", help="allow files that can run code (pickled modules)")
    parser.add_argument("--json", action="store_true", help="machine-readable output, histograms included")
    parser.add_argument("--bins", type=int, default=None, help="histogram bars (default: chosen per tensor)")
    add_cache_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from paramscope.core.files.remote_io import is_remote, shown_url
    from paramscope.core.runs.audit import audit

    results: dict[str, Any] = {}
    with terminal_progress() as state:
        for source in args.sources:
            summaries = audit(source, args.scheduler, args.bins, args.trust, state)
            shown = shown_url(source) if is_remote(source) else source
            results[shown] = {
                name: {"stats": s.stats.to_dict(), **({"histogram": s.histogram.to_dict()} if args.json else {})}
                for name, s in summaries.items()
            }
    if args.json:
        print_json({"sources": results, "scheduler": args.scheduler})
    else:
        print(format_text(results))
    return 0


def format_text(results: dict[str, Any]) -> str:
    out: list[str] = []
    for source, tensors in results.items():
        out.append(f"paramscope audit {source}")
        width = max([24] + [len(n) for n in tensors])
        out.append(f"  {'name':<{width}} {'mean':>10} {'std':>10} {'min':>10} {'max':>10} {'norm':>10} {'NaN':>6} {'Inf':>6}")
        for name, entry in tensors.items():
            s = entry["stats"]
            out.append(
                f"  {name:<{width}} {fmt_number(s['mean'])} {fmt_number(s['std'])} {fmt_number(s['min'])} "
                f"{fmt_number(s['max'])} {fmt_number(s['norm'])} {s['nan']:>6} {s['inf']:>6}"
            )
        out.append("")
    return "\n".join(out).rstrip()
