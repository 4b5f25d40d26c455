"""``paramscope cache [info|clear] [--cache-dir DIR]``: the on-disk cache of ranges read from URLs."""

from __future__ import annotations

import argparse

from paramscope.cli.common import add_cache_arguments
from paramscope.cli.json_out import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", choices=("info", "clear"), default="info", help="info (default): where, how much; clear: delete every cached range"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_cache_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from paramscope.core.files.remote_cache import RangeCache
    from paramscope.core.files.safety import human_bytes

    cache = RangeCache.from_env()  # --cache-dir/--cache-size are in the environment by now
    if args.action == "clear":
        count, freed = cache.clear()
        data = {"folder": str(cache.folder), "removed_ranges": count, "removed_bytes": freed}
        text = f"removed {count} cached range(s), {human_bytes(freed)}, from {cache.folder}"
    else:
        count, used = cache.usage()
        data = {"folder": str(cache.folder), "ranges": count, "bytes": used, "limit_bytes": cache.limit}
        limit = f"limit {human_bytes(cache.limit)}" if cache.limit else "off (size 0: nothing is cached)"
        text = f"range cache {cache.folder}: {count} range(s), {human_bytes(used)}; {limit}"
    if args.json:
        print_json(data)
    else:
        print(text)
    return 0
