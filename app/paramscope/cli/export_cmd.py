"""``paramscope export SOURCE -o OUT.pt|OUT.safetensors [--module PREFIX] [--sync]``."""

from __future__ import annotations

import argparse

from paramscope.cli.common import (
    add_source_arguments,
    add_sync_argument,
    fmt_count,
    open_from_args,
    terminal_progress,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.pt, OUT.pth, OUT.bin or OUT.safetensors")
    parser.add_argument("--module", default="", metavar="PREFIX", help="export only this submodule (names relative to it)")
    add_sync_argument(parser)


def run(args: argparse.Namespace) -> int:
    from paramscope.core.files.export import export_format, export_model

    export_format(_path(args.output))  # a bad extension fails before the model is opened
    opened = open_from_args(args)
    with terminal_progress() as state:  # (a lazily opened checkpoint is read tensor by tensor)
        result = export_model(opened.model, args.output, args.module, state, loader=opened.loader, sync=args.sync)
    tied = f", {len(result.aliases)} tied name(s) kept" if result.aliases else ""
    print(
        f"wrote {result.path} ({result.format}): {fmt_count(result.tensors)} tensors, "
        f"{fmt_count(result.nbytes)} bytes{tied}; read back and verified"
        + ("; on disk (synced)" if args.sync else "")
    )
    return 0


def _path(text: str):  # noqa: ANN202  (pathlib imported lazily with the rest)
    from pathlib import Path

    return Path(text)
