"""Rows and timing for ``paramscope bench``: one :class:`Row` per measurement, :func:`compare`
to time the app's way against its baseline, and the :class:`Context` every step gets."""

from __future__ import annotations

import gc
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paramscope.core.bench.bench_model import GPT2, GPTConfig


@dataclass
class Row:
    """One line of the report: ``app`` seconds against ``baseline`` seconds."""

    step: str
    name: str
    target: str
    limit: float | None = None  # the ratio must be <= limit (None: informative)
    limit_s: float | None = None  # or the app's seconds must be <= limit_s
    app_s: float | None = None
    baseline_s: float | None = None
    ratio: float | None = None
    value: str | None = None  # for rows that are not ratios (stall in ms)
    pending: str | None = None
    peak_rss_mb: float | None = None
    note: str | None = None

    @property
    def ok(self) -> bool | None:
        if self.limit_s is not None and self.app_s is not None:
            return self.app_s <= self.limit_s
        if self.limit is None or self.ratio is None:
            return None
        return self.ratio <= self.limit

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _finish(row: Row, app: float, base: float) -> Row:
    row.app_s, row.baseline_s = app, base
    row.ratio = app / base if base > 0 else math.inf
    return row


def _pending(step: str, name: str, target: str, why: str) -> Row:
    return Row(step, name, target, pending=why)


def compare(
    app: Callable[[], object],
    baseline: Callable[[], object],
    repeats: int,
    setup: Callable[[], object] | None = None,
) -> tuple[float, float]:
    """Best-of-``repeats`` seconds of ``app`` and ``baseline``, run interleaved (same conditions).

    ``setup`` runs untimed before each run of either.
    """
    best_app = best_base = math.inf
    for _ in range(repeats):
        for fn, is_app in ((baseline, False), (app, True)):
            if setup is not None:
                setup()
            gc.collect()
            start = time.perf_counter()
            fn()
            took = time.perf_counter() - start
            if is_app:
                best_app = min(best_app, took)
            else:
                best_base = min(best_base, took)
    return best_app, best_base


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


@dataclass
class Context:
    model: GPT2
    cfg: GPTConfig
    quick: bool
    repeats: int
    tmp: Path
    rows: list[Row] = field(default_factory=list)

    @property
    def close_repeats(self) -> int:
        """Runs for targets within 5-10% of the baseline: on a shared machine a slow spell
        lasts seconds, and three runs of each side often all fall into one."""
        return self.repeats if self.quick else max(self.repeats, 5)
