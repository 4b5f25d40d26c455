"""Fused loops for the statistics of float32 tensors, compiled by numba when it is installed.

Why: with torch ops every statistic is its own pass over memory, and ``torch.bincount`` alone
costs about three reads of the data (it also scans the keys for their min and max). These loops
read a chunk once for the moments and zero count, once more (from cache) for the histogram keys,
and count the keys two at a time into a ``width x width`` table of pairs, which halves the
serial increments. Together with ``torch.aminmax`` for the range they cost ~5 reads instead of
~20 (issue 6).

Exactness is the caller's business: the key of a value is a monotone, deterministic function of
that value (no fast-math in the key loops), so :mod:`paramscope.core.model.histogram_pass` checks the
values next to each bin edge with the same key function (:func:`edge_fixes`) and corrects the
few that numpy assigns differently.

Set ``PARAMSCOPE_NUMBA=0`` to use the torch loops instead (the results are identical; the torch
loops are the reference the tests compare these with). Measured on GPT-2 small (``paramscope
bench --step statistics``): 0.13-0.16 s with these loops, 0.47 s without. Loading them costs
~0.7 s once per process (numba, the scipy it imports, the cached machine code), so they are
loaded only for reads large enough to pay for that
(:func:`paramscope.core.model.float_scan.prefer_compiled`).

Compiled once per machine, not once per run: numba caches the machine code in
:func:`cache_folder` (``NUMBA_CACHE_DIR`` if set, else ``~/.cache/paramscope/numba``), where any
user can write, unlike next to an installed package.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class KeyRule:
    """The key of ``x``: ``trunc(clamp((float64(x) - shift) / step + add, 0, top))``.

    Always clamped: the loops write counts without bounds checks, so a value outside the range
    (a tensor changed since its range was read) must still land in the table.
    """

    shift: float
    step: float
    add: float
    top: float


def _moments(x: Any, shift: float) -> tuple[float, float, int]:
    s1 = 0.0
    s2 = 0.0
    zeros = 0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        zeros += v == 0.0
        d = v - shift
        s1 += d
        s2 += d * d
    return s1, s2, zeros


def _key(v: float, shift: float, step: float, add: float, top: float) -> int:
    t = (np.float64(v) - shift) / step + add
    return np.int32(min(max(t, 0.0), top))  # NaN never reaches here: callers pass finite data


def _keys(x: Any, shift: float, step: float, add: float, top: float, out: Any) -> None:
    for i in range(x.shape[0]):
        out[i] = _key_jit(x[i], shift, step, add, top)


def _pair_keys(
    x: Any, shift: float, step: float, add: float, top: float, width: int, out: Any
) -> None:
    half = x.shape[0] // 2
    for i in range(half):
        a = _key_jit(x[i], shift, step, add, top)
        b = _key_jit(x[i + half], shift, step, add, top)
        out[i] = a * width + b


def _count(keys: Any, counts: Any) -> None:
    for i in range(keys.shape[0]):
        counts[keys[i]] += 1


def _edge_check(
    centers: Any,
    edges: Any,
    shift: float,
    step: float,
    add: float,
    top: float,
    inside: bool,
    window: int,
    found: Any,
) -> int:
    """Values next to each edge whose key differs from numpy.histogram's bin (see
    ``histogram_pass.misassigned``): written as rows ``(value, key, true key)`` into ``found``; returns
    how many, or -1 if one lies at the border of its window (the window may be too small)."""
    bins = edges.shape[0] - 1
    n = 0
    for j in range(centers.shape[0]):
        for side in range(3):  # the edge's own value, then `window` steps up, then down
            v = centers[j]
            for s in range(window if side else 1):
                if side == 1:
                    v = np.nextafter(v, np.float32(np.inf))
                elif side == 2:
                    v = np.nextafter(v, np.float32(-np.inf))
                if not np.isfinite(v):
                    continue
                x = np.float64(v)
                if inside and (x < edges[0] or x > edges[bins]):
                    continue
                key = _key_jit(v, shift, step, add, top)
                if inside:
                    key = min(key, bins - 1)  # key `bins` is counted in the last bar
                # numpy's bin: edges[i] <= x < edges[i + 1], the last edge closing the last bin
                if x < edges[0]:
                    true = 0 if not inside else -1
                elif x > edges[bins]:
                    true = bins + 1
                else:
                    true = np.searchsorted(edges, x, side="right") - 1
                    if x == edges[bins]:
                        true = bins - 1
                    if not inside:
                        true += 1
                if key != true:
                    if side and s == window - 1:
                        return -1
                    found[n, 0] = x
                    found[n, 1] = key
                    found[n, 2] = true
                    n += 1
    return n


def cache_folder() -> Path:
    """Where numba keeps the compiled loops: ``NUMBA_CACHE_DIR``, else the user's cache folder."""
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "paramscope" / "numba"


def _wanted() -> bool:
    if os.environ.get("PARAMSCOPE_NUMBA", "1") == "0":
        return False
    return importlib.util.find_spec("numba") is not None  # numba itself is imported on first use


AVAILABLE = _wanted()
_key_jit: Any = None  # the compiled _key, a global the other loops call (set by _compiled)


@functools.cache
def _compiled() -> SimpleNamespace | None:
    """The loops, compiled (or loaded from numba's cache) and run once; None if numba fails.

    Done on first use, not at import: it costs ~0.5 s and holds the GIL for stretches of a few
    hundred ms, so the window calls :func:`load` at startup, before it is shown.
    """
    global _key_jit
    try:
        import numba

        numba.config.CACHE_DIR = str(cache_folder())  # read when each loop is compiled
        plain = {"cache": True, "nogil": True, "boundscheck": False}
        _key_jit = numba.njit(inline="always", **plain)(_key)
        loops = SimpleNamespace(
            # Reassociation only where it lets the sums vectorize; never in the key loops.
            moments=numba.njit(fastmath={"reassoc"}, **plain)(_moments),
            keys=numba.njit(**plain)(_keys),
            pair_keys=numba.njit(**plain)(_pair_keys),
            count=numba.njit(**plain)(_count),
            edge_check=numba.njit(**plain)(_edge_check),
        )
        _run_once(loops)
    except Exception:  # numba installed but unusable (e.g. a numpy too new for it): torch loops
        return None
    return loops


def _run_once(loops: SimpleNamespace) -> None:
    """Compile every loop for float32 input now, so a failure shows here and not mid-statistics."""
    x = np.zeros(3, dtype=np.float32)
    out = np.zeros(3, dtype=np.int32)
    loops.moments(x, 0.0)
    loops.keys(x, 0.0, 1.0, 0.0, 1.0, out)
    loops.pair_keys(x, 0.0, 1.0, 0.0, 1.0, 2, out)
    loops.count(out, np.zeros(4, dtype=np.int64))
    edges = np.array([0.0, 1.0])
    loops.edge_check(x, edges, 0.0, 1.0, 0.0, 1.0, True, 2, np.zeros((15, 3)))


def load() -> bool:
    """Load the loops now (if wanted and possible); whether they can be used."""
    return AVAILABLE and _compiled() is not None


#: The choice of one job (an audit, a series), set by :func:`policy`; None: no job chose.
_JOB_CHOICE: ContextVar[bool | None] = ContextVar("paramscope_compiled_loops", default=None)


@contextmanager
def policy(use: bool) -> Iterator[bool]:
    """Within the block, float32 statistics use the compiled loops exactly when ``use`` (and they load).

    The compiled sums round differently from torch's in the last bits, so a job whose parts run
    in several processes (Dask workers, each with its own history of what it loaded) makes the
    choice once for the whole job and every part follows it.
    """
    chosen = bool(use) and load()
    token = _JOB_CHOICE.set(chosen)
    try:
        yield chosen
    finally:
        _JOB_CHOICE.reset(token)


def job_choice() -> bool | None:
    """What the enclosing :func:`policy` chose, or None outside one."""
    return _JOB_CHOICE.get()


def loaded() -> bool:
    """Whether the loops are ready without waiting (loading costs ~0.5 s once per process)."""
    return AVAILABLE and _compiled.cache_info().currsize > 0 and _compiled() is not None


def _loops() -> SimpleNamespace:
    loops = _compiled()
    if loops is None:
        raise RuntimeError("the compiled statistics loops are not available")
    return loops


def moments(x: np.ndarray, shift: float) -> tuple[float, float, int]:
    """``(sum(x - shift), sum((x - shift)**2), zeros)`` of a 1-D float array, in float64."""
    s1, s2, zeros = _loops().moments(x, shift)
    return float(s1), float(s2), int(zeros)


class PairCounter:
    """Counts of keys ``0..width-1`` over many chunks, two keys per increment.

    Pairs are made of the first and second half of each chunk; an odd last value is counted
    alone. Only used when ``AVAILABLE``.
    """

    def __init__(self, rule: KeyRule, width: int, chunk: int) -> None:
        self.rule = rule
        self.width = width
        self.pairs = np.zeros(width * width, dtype=np.int64)
        self.singles = np.zeros(width, dtype=np.int64)
        self._buffer = np.empty(max(chunk // 2, 1), dtype=np.int32)

    def add(self, x: np.ndarray) -> None:
        loops, r = _loops(), self.rule
        half = x.shape[0] // 2
        if half:
            out = self._buffer[:half]
            loops.pair_keys(x, r.shift, r.step, r.add, r.top, self.width, out)
            loops.count(out, self.pairs)
        if x.shape[0] % 2:
            last = self._buffer[:1]
            loops.keys(x[-1:], r.shift, r.step, r.add, r.top, last)
            self.singles[last[0]] += 1

    def counts(self) -> np.ndarray:
        table = self.pairs.reshape(self.width, self.width)
        return table.sum(axis=0) + table.sum(axis=1) + self.singles


def edge_fixes(
    centers: np.ndarray, edges: np.ndarray, rule: KeyRule, inside: bool, window: int
) -> list[tuple[float, int, int]] | None:
    """``(value, key, true key)`` of the float32 values within ``window`` steps of each edge
    (``centers``: the edges as float32) whose key is not numpy's bin; None if unsure."""
    found = np.empty((centers.shape[0] * (2 * window + 1), 3), dtype=np.float64)
    n = _loops().edge_check(
        centers, edges, rule.shift, rule.step, rule.add, rule.top, inside, window, found
    )
    if n < 0:
        return None
    unique = {float(v): (int(k), int(t)) for v, k, t in found[:n]}
    return [(value, key, true) for value, (key, true) in unique.items()]

