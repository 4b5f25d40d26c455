"""Arguments and helpers shared by subcommands."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PROGRESS_EVERY_S = 0.2  # a terminal line rewritten 100,000 times (one per tiny tensor) cost seconds


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="demo:NAME, FILE.py:NAME, package.module:NAME or a checkpoint file")
    parser.add_argument("--weights", metavar="FILE", help="load this state_dict into the model first")
    parser.add_argument(
        "--strip-prefix",
        metavar="auto|PREFIX",
        help="with --weights: strip PREFIX (e.g. 'module.') from its keys; auto: the key change the "
        "report suggests (a DDP/torch.compile/wrapper prefix, a PEFT adapter name)",
    )
    add_entry_arguments(parser)
    parser.add_argument("--trust", action="store_true", help="allow files that can run code (pickled modules, .pt2)")
    add_cache_arguments(parser)


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir``/``--cache-size``: the on-disk cache of ranges read from URLs."""
    group = parser.add_argument_group("range cache (sources by URL)")
    group.add_argument(
        "--cache-dir", metavar="DIR", help="keep fetched ranges here (default: $PARAMSCOPE_CACHE_DIR or ~/.cache/paramscope/ranges)"
    )
    group.add_argument(
        "--cache-size", metavar="SIZE", help="at most this much, e.g. 2GB, 500MiB; 0: no cache (default: $PARAMSCOPE_CACHE_BYTES or 2 GiB)"
    )


def apply_cache_arguments(args: argparse.Namespace) -> None:
    """Put ``--cache-dir``/``--cache-size`` in the environment, which the cache reads: worker
    processes (``audit --scheduler local:N``) inherit it."""
    import os

    if getattr(args, "cache_size", None) is not None:
        from paramscope.core.files.remote_cache import SIZE_VARIABLE, parse_size

        os.environ[SIZE_VARIABLE] = str(parse_size(args.cache_size))
    if getattr(args, "cache_dir", None):
        from paramscope.core.files.remote_cache import DIR_VARIABLE

        os.environ[DIR_VARIABLE] = os.path.abspath(os.path.expanduser(args.cache_dir))


def add_entry_arguments(parser: argparse.ArgumentParser) -> None:
    """``--entry``/``--weights-entry``: which weight set of a checkpoint holding several."""
    parser.add_argument(
        "--entry",
        metavar="NAME",
        help="when SOURCE is a checkpoint holding several weight sets (model, ema, ...): open this one",
    )
    parser.add_argument("--weights-entry", metavar="NAME", help="the same for the --weights file")


def add_sync_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sync",
        action="store_true",
        help="wait until the file is on disk (fsync) before it replaces OUT, so that even a power "
        "cut leaves the old or the new file (about a second per GB on a cloud disk); without it a "
        "failure or kill still never leaves a half-written file",
    )


def open_from_args(args: argparse.Namespace) -> Any:
    """The source the arguments name; on a terminal, how far its open is on stderr (a
    checkpoint of a million tensors takes half a minute)."""
    from paramscope.core.sources.sources import open_source

    # commands with a SOURCE but without every source option (presets) leave them unset
    with terminal_progress() as state:
        return open_source(
            args.source,
            trust=args.trust,
            weights=getattr(args, "weights", None),
            strip_prefix=getattr(args, "strip_prefix", None),
            entry=getattr(args, "entry", None),
            weights_entry=getattr(args, "weights_entry", None),
            state=state,
        )


def fmt_number(value: float | str | None, width: int = 10) -> str:
    """A statistic in a column; JSON-ready entries hold NaN and Inf as "nan", "inf", "-inf"."""
    if value is None:
        return "-".rjust(width)
    value = float(value)
    if not math.isfinite(value):
        return str(value).rjust(width)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}".rjust(width)
    return f"{value:.4f}".rjust(width)


def fmt_count(n: int) -> str:
    return f"{n:,}"


@contextmanager
def terminal_progress() -> Iterator[Any]:
    """A TaskState whose progress is one line on stderr, rewritten in place at most every
    :data:`PROGRESS_EVERY_S` (on a terminal only); the line is wiped at the end, also on Ctrl+C,
    so the one-line message that follows stands alone."""
    from paramscope.core.tasks import TaskState

    shown = sys.stderr.isatty()
    last = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if shown and now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            print(f"\r{fraction:6.1%} {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    try:
        yield TaskState(progress)
    finally:
        if shown:
            print(f"\r{'':<68}\r", end="", file=sys.stderr, flush=True)
