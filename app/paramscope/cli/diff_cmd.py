"""``paramscope diff A B [--json]``: compare two models or checkpoints tensor by tensor."""

from __future__ import annotations

import argparse
from typing import Any

from paramscope.cli.common import add_cache_arguments, fmt_number
from paramscope.cli.json_out import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="first source: a checkpoint file, demo:NAME, FILE.py:NAME, ...")
    parser.add_argument("b", help="second source")
    parser.add_argument("--entry-a", metavar="NAME", help="the weight set of A when it holds several (model, ema, ...)")
    parser.add_argument("--entry-b", metavar="NAME", help="the same for B (compare a file's model with its ema: A A --entry-b ema)")
    parser.add_argument("--trust", action="store_true", help="allow files that can run code (pickled modules, .pt2)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--bins", type=int, default=32, help="histogram bins of each difference (default 32)")
    parser.add_argument("--all", action="store_true", help="list identical tensors too")
    add_cache_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from paramscope.core.files.remote_io import is_remote, shown_url
    from paramscope.core.sources.diff import diff_sources

    result = diff_sources(
        args.a, args.b, trust=args.trust, bins=args.bins if args.json else 0, entries=(args.entry_a, args.entry_b)
    )
    a, b = (shown_url(s) if is_remote(s) else s for s in (args.a, args.b))  # never a URL's password
    if args.json:
        data = result.to_dict()
        data["a"], data["b"] = a, b
        print_json(data)
    else:
        print(format_text(a, b, result.to_dict(with_histogram=False), args.all))
    return 0


def format_text(a: str, b: str, data: dict[str, Any], show_all: bool = False) -> str:
    out = [f"paramscope diff {a} {b}", ""]
    rows = [t for t in data["tensors"] if show_all or t["max_abs_diff"] != 0]
    width = max([24] + [len(t["name"]) for t in rows])
    out.append(f"  {'name':<{width}} {'max|Δ|':>10} {'rel':>10} {'cosine':>10}")
    for t in rows:
        out.append(
            f"  {t['name']:<{width}} {fmt_number(t['max_abs_diff'])} {fmt_number(t['rel_change'])} {fmt_number(t['cosine'])}"
        )
        if len(t["aliases"]) > 1:
            out.append(f"    also named: {', '.join(t['aliases'][1:])}")
    recast = data.get("recast", [])
    same = len(data["tensors"]) - data["changed"] - len(recast)
    out.append("")
    out.append(f"{data['changed']} tensor(s) differ, {same} identical")
    if recast:
        first = next(t for t in data["tensors"] if t["name"] == recast[0])
        out.append(
            f"{len(recast)} tensor(s) hold the same values in another dtype, e.g. {first['name']}: "
            f"{first['dtype_a']} in {a}, {first['dtype_b']} in {b}"
        )
    tied = data.get("tied_only", {})
    for key, label in (("only_a", f"only in {a}"), ("only_b", f"only in {b}")):
        if data[key]:
            names = [f"{n} (tied there to {tied[n]})" if n in tied else n for n in data[key]]
            out.append(f"{label}: {', '.join(names)}")
    for m in data["mismatched"]:
        out.append(f"mismatched: {m['name']}: shape {m['shape_a']} {m['dtype_a']} vs {m['shape_b']} {m['dtype_b']}")
    return "\n".join(out)
