"""The histogram read: float64 keys counted into int64, exact by numpy's edge rule.

The histogram key is ``trunc((x - lo) / step + offset)`` counted by ``torch.bincount`` (or the
compiled loops). Every step (exact cast, ``sub``, ``div``, ``add``, ``clamp``, truncation) is
monotone and deterministic, so the keys are a monotone step function of the value; it can
disagree with numpy's rule ``edges[i] <= x < edges[i+1]`` only for values between an edge and
the key's own step. Those few dtype values are found once per histogram by testing the values
next to each edge (:func:`misassigned`), and only when the data contains them is a chunk
corrected. For float32 data this set is nearly always empty; float64 data uses numpy's own
+-1 edge correction per chunk instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from paramscope.core.model import float_scan, kernels
from paramscope.core.model.float_scan import Scan, chunks, drop_nonfinite, uses_compiled
from paramscope.core.model.stat_results import histogram_edges, numpy_bins
from paramscope.core.tasks import TaskState


@dataclass(frozen=True)
class KeyMap:
    """float64 value -> histogram key by a fixed sequence of monotone, deterministic torch ops.

    ``inside``: every value lies within the edges; keys 0..bins, key ``bins`` folds into the last
    bar. Otherwise keys are clamped: 0 below the edges, 1..bins the bars, bins+1 above.
    """

    edges: np.ndarray
    shift: float
    inside: bool

    @property
    def bins(self) -> int:
        return len(self.edges) - 1

    @property
    def length(self) -> int:
        return self.bins + 1 if self.inside else self.bins + 2

    def keys(self, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Keys of ``b = x - shift`` (float64, overwritten) into the integer tensor ``out``."""
        e0, etop = float(self.edges[0]), float(self.edges[-1])
        # Divide by numpy's own step (not multiply by its inverse): a value exactly on an edge
        # (common: midpoints, power-of-two bins) then gets exactly the edge's key.
        step = (etop - e0) / self.bins
        offset = (self.shift - e0) / step
        b.div_(step)
        if self.inside:
            if offset != 0.0:
                b.add_(offset)
        else:
            b.add_(offset + 1.0)
            b.clamp_(0.0, self.bins + 1.0)
        out.copy_(b)  # truncation toward zero: monotone
        return out

    def rule(self) -> kernels.KeyRule:
        """The same keys for the compiled loops (same operations, same order)."""
        e0, etop = float(self.edges[0]), float(self.edges[-1])
        step = (etop - e0) / self.bins
        offset = (self.shift - e0) / step
        if self.inside:  # the torch keys need no clamp here; the same clamp changes none of them
            return kernels.KeyRule(self.shift, step, offset, float(self.bins))
        return kernels.KeyRule(self.shift, step, offset + 1.0, self.bins + 1.0)

    def true_keys(self, values: np.ndarray) -> np.ndarray:
        """The keys numpy.histogram's rule gives (the bin, shifted as described above)."""
        idx = numpy_bins(values, self.edges)
        if self.inside:
            return idx
        idx = idx + 1
        idx[values < self.edges[0]] = 0
        idx[values > self.edges[-1]] = self.bins + 1
        return idx

    def bars(self, counts: np.ndarray) -> np.ndarray:
        if self.inside:
            bars = counts[: self.bins].copy()
            bars[-1] += counts[self.bins]
            return bars
        return counts[1 : self.bins + 1].copy()


# Neighbouring values of each edge tested for disagreement (the region is ~1 float64 ulp wide).
EDGE_WINDOW = 4


def misassigned(
    dtype: torch.dtype, keymap: KeyMap, fused: bool = False
) -> list[tuple[float, int, int]] | None:
    """float32 values whose key differs from numpy's rule: [(value, key, true key)]; None if unsure.

    Keys and numpy's rule are both monotone step functions of the value, so they can disagree only
    on values between an edge and the keys' step next to it. Those lie within a float64 rounding
    of the edge: test the ``EDGE_WINDOW`` dtype values on each side of every edge in one batch.
    A disagreement at the border of a window means the window may be too small: return None.
    ``fused``: the keys of the compiled loops (:mod:`paramscope.core.model.kernels`), else the torch ones.
    """
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    with np.errstate(over="ignore"):  # edges beyond the dtype's range become +-inf: not finite
        center = keymap.edges.astype(np_dtype)
    if fused:  # the same test in one compiled loop (~0.4 ms -> ~20 us a tensor)
        if np_dtype != np.float32:
            raise ValueError(f"the compiled keys read float32 only, not {dtype}")
        return kernels.edge_fixes(center, keymap.edges, keymap.rule(), keymap.inside, EDGE_WINDOW)
    columns = [center]
    for direction in (math.inf, -math.inf):
        v = center
        for _ in range(EDGE_WINDOW):
            v = np.nextafter(v, np_dtype.type(direction))
            columns.append(v)
    grid_np = np.stack(columns, axis=1)  # edges x (1 + 2*window), numpy: ~10x less overhead
    finite_np = np.isfinite(grid_np)
    grid = torch.from_numpy(grid_np)
    b = grid.to(torch.float64).sub_(keymap.shift)
    b[~torch.from_numpy(finite_np)] = 0.0
    flat_keys = torch.empty(b.numel(), dtype=torch.int64)
    keys = keymap.keys(b.reshape(-1), flat_keys).reshape(grid.shape)
    values = grid_np.astype(np.float64)
    true = keymap.true_keys(values.reshape(-1)).reshape(values.shape)
    estimated = keys.numpy()
    if keymap.inside:  # key `bins` is counted in the last bar
        estimated = np.minimum(estimated, keymap.bins - 1)
    wrong = (estimated != true) & finite_np
    if keymap.inside:  # values outside the edges never reach these keys
        wrong &= (values >= keymap.edges[0]) & (values <= keymap.edges[-1])
    border = [EDGE_WINDOW, 2 * EDGE_WINDOW]  # the outermost column on each side
    if wrong[:, border].any():
        return None
    found = {
        float(values[i, j]): (int(keys[i, j]), int(true[i, j]))
        for i, j in zip(*np.nonzero(wrong), strict=True)
    }
    return [(value, key, true_key) for value, (key, true_key) in found.items()]


def histogram_pass(
    flat: torch.Tensor,
    bins: int,
    value_range: tuple[float, float],
    data_lo: float,
    inside: bool,
    has_nonfinite: bool,
    moments: bool,
    state: TaskState | None,
    constant: int | None = None,
) -> Scan:
    """The histogram read: float64 keys counted by bincount into int64, exact by the edge rule.

    ``data_lo`` is the tensor's finite minimum: the shift of the keys and of the moments.
    ``inside`` promises that every finite value lies within ``value_range``; ``constant``, that
    the tensor holds this many copies of ``data_lo`` and nothing else.
    """
    keymap = KeyMap(histogram_edges(value_range[0], value_range[1], bins), data_lo, inside)
    scan = Scan(shift=data_lo, edges=keymap.edges)
    if constant is not None and not has_nonfinite:  # zero biases, LayerNorm ones: no read at all
        bars = np.zeros(bins, dtype=np.int64)
        where = int(numpy_bins(np.array([data_lo]), keymap.edges)[0])
        if where >= 0:
            bars[where] = constant
        scan.count, scan.counts = constant, bars
        return scan
    if (keymap.edges[-1] - keymap.edges[0]) / bins == 0:  # no width, or subnormal: no step to divide by
        return _zero_width_pass(flat, keymap, scan, has_nonfinite, moments, state)
    if uses_compiled(flat) and not has_nonfinite:
        fixes = misassigned(torch.float32, keymap, fused=True)
        if fixes is not None:
            return _fused_histogram_pass(flat, keymap, fixes, scan, moments, state)
    # The edge check costs ~1 ms: worth it for large float32 tensors; one chunk is fixed directly.
    large = flat.numel() > float_scan.CHUNK_ELEMENTS
    fixes = misassigned(torch.float32, keymap) if flat.dtype == torch.float32 and large else None
    return _torch_histogram_pass(flat, keymap, fixes, scan, has_nonfinite, moments, state)


def _torch_histogram_pass(
    flat: torch.Tensor,
    keymap: KeyMap,
    fixes: list[tuple[float, int, int]] | None,
    scan: Scan,
    has_nonfinite: bool,
    moments: bool,
    state: TaskState | None,
) -> Scan:
    """:func:`histogram_pass` through torch ops (the reference the compiled loops are tested against).

    ``fixes``: the values whose key is wrong (see :func:`misassigned`); None corrects every key
    the way numpy does (float64 data, an unusual edge, a single chunk).
    """
    counts = torch.zeros(keymap.length, dtype=torch.int64)
    size = min(float_scan.CHUNK_ELEMENTS, flat.numel())
    buf = torch.empty(size, dtype=torch.float64)
    keys = torch.empty(size, dtype=torch.int64)  # int64: bincount on int32 is twice as slow
    edges_t = torch.from_numpy(keymap.edges)
    for part in chunks(flat):
        if state is not None:
            state.check()
        if has_nonfinite:
            part = drop_nonfinite(part, scan)
        n = part.numel()
        if n == 0:
            continue
        b = buf[:n]
        b.copy_(part)
        b.sub_(keymap.shift)
        if moments:
            scan.count += n
            scan.s1 += float(b.sum())
            scan.s2 += float(torch.dot(b, b))
        k = keymap.keys(b, keys[:n])
        if fixes is None:
            _numpy_fix(k, part.to(torch.float64), edges_t, keymap)
            counts += torch.bincount(k, minlength=keymap.length)
            continue
        found = torch.bincount(k, minlength=keymap.length)
        if found.numel() > keymap.length:
            raise RuntimeError("values outside the histogram range (statistics out of date?)")
        counts += found
        for value, key, true_key in fixes:  # nearly always empty for float32 data
            hits = int((part == value).sum())
            counts[key] -= hits
            counts[true_key] += hits
    scan.counts = keymap.bars(counts.numpy())
    return scan


def _fused_histogram_pass(
    flat: torch.Tensor,
    keymap: KeyMap,
    fixes: list[tuple[float, int, int]],
    scan: Scan,
    moments: bool,
    state: TaskState | None,
) -> Scan:
    """:func:`histogram_pass` for finite float32 data through the compiled loops.

    Also counts the zeros when ``moments`` (the range pass then skips them).
    """
    counter = kernels.PairCounter(keymap.rule(), keymap.length, float_scan.FUSED_CHUNK_ELEMENTS)
    scan.zeros_known = moments
    for part in chunks(flat, float_scan.FUSED_CHUNK_ELEMENTS):
        if state is not None:
            state.check()
        x = part.contiguous().numpy()
        if moments:
            s1, s2, zeros = kernels.moments(x, keymap.shift)
            scan.count += x.shape[0]
            scan.s1, scan.s2 = scan.s1 + s1, scan.s2 + s2
            scan.zeros += zeros
        counter.add(x)
        for value, key, true_key in fixes:  # nearly always empty
            hits = int(np.count_nonzero(x == np.float32(value)))
            counter.singles[key] -= hits
            counter.singles[true_key] += hits
    scan.counts = keymap.bars(counter.counts())
    return scan


def _zero_width_pass(
    flat: torch.Tensor, keymap: KeyMap, scan: Scan, has_nonfinite: bool, moments: bool, state: TaskState | None
) -> Scan:
    """Bars of no width: a constant of magnitude 2**53 or more, widened by 0.5, is still one
    value (numpy.histogram refuses the range), or a range of subnormals (~1e-323) whose width
    over the bins rounds to 0: keys would divide by a zero step. Each value is put in its bar by
    numpy's rule, which gives the last bar to a value on the last edge."""
    bars = np.zeros(keymap.bins, dtype=np.int64)
    for part in chunks(flat):
        if state is not None:
            state.check()
        if has_nonfinite:
            part = drop_nonfinite(part, scan)
        x = part.to(torch.float64)
        if moments:
            b = x - keymap.shift
            scan.count += x.numel()
            scan.s1 += float(b.sum())
            scan.s2 += float(torch.dot(b, b))
        where = numpy_bins(x.numpy(), keymap.edges)
        bars += np.bincount(where[where >= 0], minlength=keymap.bins)
    scan.counts = bars
    return scan


def _numpy_fix(keys: torch.Tensor, x64: torch.Tensor, edges: torch.Tensor, keymap: KeyMap) -> None:
    """Correct estimated keys (off by at most one) to numpy's rule, the way numpy.histogram does."""
    bins = keymap.bins
    first = 0 if keymap.inside else 1
    idx = (keys - first).clamp_(0, bins - 1)
    idx -= ((x64 < edges[idx]) & (idx > 0)).to(torch.int64)
    idx += ((x64 >= edges[idx + 1]) & (idx < bins - 1)).to(torch.int64)
    keys.copy_(idx + first)
    if not keymap.inside:
        keys[x64 < edges[0]] = 0
        keys[x64 > edges[-1]] = bins + 1
