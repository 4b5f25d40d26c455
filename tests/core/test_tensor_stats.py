"""Statistics and histograms are exact: counts equal numpy.histogram on float64, for every dtype."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import paramscope.core.model.float_scan as scan_module
import paramscope.core.model.histogram_pass as pass_module
import paramscope.core.model.tensor_stats as stats_module
import paramscope.core.model.value_tables as table_module
from paramscope.core.errors import Cancelled
from paramscope.core.model import kernels
from paramscope.core.model.tensor_stats import (
    Histogram,
    TensorStats,
    histogram_edges,
    tensor_histogram,
    tensor_stats,
    tensor_summary,
)
from paramscope.core.tasks import TaskState

# float32 runs through the compiled loops when numba is installed, else through torch ops: the
# tests that matter for float32 run both ways (`path`) and must give the same exact results.
PATHS = ["compiled", "torch"] if kernels.AVAILABLE else ["torch"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "torch":
        monkeypatch.setattr(kernels, "AVAILABLE", False)
    else:
        monkeypatch.setattr(scan_module, "FUSED_MIN_ELEMENTS", 0)
    return request.param


def small_chunks(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    monkeypatch.setattr(scan_module, "CHUNK_ELEMENTS", size)
    monkeypatch.setattr(scan_module, "FUSED_CHUNK_ELEMENTS", size)
    monkeypatch.setattr(table_module, "TABLE_CHUNK_ELEMENTS", 4 * size)


def reference(tensor: torch.Tensor, bins: int = 64, value_range=None):
    """numpy on the float64 values: (counts, finite values, nan, +inf, -inf)."""
    flat = tensor.detach().reshape(-1)
    if flat.is_complex():
        flat = flat.abs()
    values = flat.to(torch.float64).numpy()
    finite = values[np.isfinite(values)]
    if value_range is None:
        value_range = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    edges = histogram_edges(value_range[0], value_range[1], bins)
    counts = np.histogram(finite, bins=edges)[0]
    return (
        counts,
        finite,
        int(np.isnan(values).sum()),
        int(np.isposinf(values).sum()),
        int(np.isneginf(values).sum()),
    )


def all_histograms(tensor: torch.Tensor, bins: int = 64, value_range=None) -> list[Histogram]:
    """Every way the app computes a histogram; all must agree with numpy."""
    return [
        tensor_histogram(tensor, bins, value_range),
        tensor_summary(tensor, bins, value_range)[1],
        tensor_histogram(tensor, bins, value_range, stats=tensor_stats(tensor)),
    ]


def assert_exact(tensor: torch.Tensor, bins: int = 64, value_range=None) -> None:
    """Exact with the default chunks and with tiny ones (multi-chunk paths on small tensors)."""
    _assert_exact(tensor, bins, value_range)
    with (
        patch.object(scan_module, "CHUNK_ELEMENTS", 5),
        patch.object(scan_module, "FUSED_CHUNK_ELEMENTS", 5),
        patch.object(table_module, "TABLE_CHUNK_ELEMENTS", 20),
    ):
        _assert_exact(tensor, bins, value_range)


def _assert_exact(tensor: torch.Tensor, bins: int = 64, value_range=None) -> None:
    counts, finite, nan, posinf, neginf = reference(tensor, bins, value_range)
    for hist in all_histograms(tensor, bins, value_range):
        assert hist.counts.dtype == np.int64
        np.testing.assert_array_equal(hist.counts, counts)
        assert (hist.nan, hist.posinf, hist.neginf) == (nan, posinf, neginf)
    for summary in (tensor_stats(tensor), tensor_summary(tensor, bins)[0]):
        assert (summary.nan, summary.posinf, summary.neginf) == (nan, posinf, neginf)
        assert summary.finite == finite.size
        if finite.size:
            assert summary.min == finite.min() and summary.max == finite.max()
            # rounding noise relative to the values (a mean near 0 has no relative precision;
            # a constant's std is ~1e-17 in numpy, exactly 0 here)
            noise = 1e-12 * float(np.abs(finite).max()) + 1e-300
            assert summary.mean == pytest.approx(finite.mean(), rel=1e-12, abs=noise)
            std = finite.std(ddof=1) if finite.size > 1 else 0.0
            assert summary.std == pytest.approx(std, rel=1e-9, abs=noise)
            assert summary.norm == pytest.approx(math.sqrt(np.dot(finite, finite)), rel=1e-12)
        zeros = int((tensor.detach().reshape(-1) == 0).sum())
        assert summary.zero_fraction == pytest.approx(zeros / tensor.numel())


def _random(dtype: torch.dtype, n: int = 5_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(n, generator=g) > 0.3
    if dtype in (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64):
        info = torch.iinfo(dtype)
        return torch.randint(
            max(info.min, -(10**6)), min(info.max, 10**6), (n,), generator=g, dtype=dtype
        )
    if dtype.is_complex:
        return torch.randn(n, generator=g, dtype=dtype)
    return (torch.randn(n, generator=g, dtype=torch.float64) * 0.02).to(dtype)


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.float64,
        torch.int8,
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.bool,
        torch.complex64,
        torch.complex128,
    ],
    ids=str,
)
def test_every_dtype_matches_numpy_on_float64(dtype: torch.dtype) -> None:
    tensor = _random(dtype)
    assert_exact(tensor)
    assert_exact(tensor, bins=7)
    lo, hi = reference(tensor)[1].min(), reference(tensor)[1].max()
    assert_exact(
        tensor, bins=10, value_range=(lo + (hi - lo) / 3, hi - (hi - lo) / 5)
    )  # values outside


def test_complex_is_described_by_its_magnitude() -> None:
    z = torch.tensor([3 + 4j, 0j], dtype=torch.complex64)
    stats = tensor_stats(z)
    assert (stats.max, stats.min, stats.mean) == (5.0, 0.0, 2.5)
    assert "complex" in (stats.note or "")


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64], ids=str
)
def test_nan_and_inf_are_counted_beside_the_bars(dtype: torch.dtype, path: str) -> None:
    x = torch.randn(10_000, dtype=torch.float64).to(dtype)
    x[::7] = math.nan
    x[1::11] = math.inf
    x[2::13] = -math.inf
    assert_exact(x)
    hist = tensor_histogram(x)
    assert hist.total == x.numel()
    assert hist.nan == int(torch.isnan(x).sum()) > 0


def test_only_nonfinite_values_give_empty_bars_and_counts() -> None:
    x = torch.tensor([math.nan, math.inf, -math.inf, math.nan])
    stats, hist = tensor_summary(x)
    assert stats.mean is None and stats.finite == 0 and stats.nan == 2
    assert hist.counts.sum() == 0 and (hist.nan, hist.posinf, hist.neginf) == (2, 1, 1)


def test_empty_meta_and_lazy_tensors_have_no_values_and_never_raise() -> None:
    empty = torch.empty(0, 3)
    assert tensor_stats(empty) == TensorStats(numel=0, note="empty tensor")  # nothing is defined
    assert tensor_summary(empty)[0] == TensorStats(numel=0, note="empty tensor")
    assert tensor_stats(torch.empty(0, dtype=torch.int8)).zero_fraction is None  # not 0 of 0
    assert tensor_summary(empty)[1].counts.sum() == 0

    meta = torch.empty(1000, 1000, device="meta")
    for stats in (tensor_stats(meta), tensor_summary(meta)[0]):
        assert not stats.has_data and "meta" in (stats.note or "")
        assert stats.numel == 1_000_000
    assert "meta" in (tensor_histogram(meta).note or "")

    lazy = nn.LazyLinear(4).weight
    stats = tensor_stats(lazy)
    assert not stats.has_data and "lazy" in (stats.note or "")
    assert tensor_histogram(lazy).counts.sum() == 0
    assert not tensor_summary(lazy)[0].has_data


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_values_exactly_on_bin_edges(dtype: torch.dtype, path: str) -> None:
    edges = histogram_edges(-1.3, 2.7, 64)
    on = torch.from_numpy(edges).to(dtype)
    up = torch.nextafter(on, torch.full_like(on, math.inf)) if dtype != torch.float16 else on
    down = torch.nextafter(on, torch.full_like(on, -math.inf)) if dtype != torch.float16 else on
    x = torch.cat([on, up, down])
    assert_exact(x, value_range=(-1.3, 2.7))
    assert_exact(x)
    # integers on power-of-two and uneven bins, tenths (not representable), midpoints
    assert_exact(torch.arange(0, 65, dtype=dtype).repeat(3))
    assert_exact(torch.arange(0, 65, dtype=dtype), bins=7)
    assert_exact(torch.arange(0, 1001, dtype=dtype) / 10, bins=10)


def test_top_edge_is_inside_the_last_bar_and_beyond_it_is_not(path: str) -> None:
    x = torch.tensor([0.0, 0.5, 1.0, 1.0000001, -0.0000001])
    hist = tensor_histogram(x, bins=2, value_range=(0.0, 1.0))
    assert hist.counts.tolist() == [1, 2]
    assert_exact(x, bins=2, value_range=(0.0, 1.0))


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.int64], ids=str
)
def test_constant_tensors(dtype: torch.dtype, path: str) -> None:
    x = (
        torch.full((1000,), 7, dtype=dtype)
        if not dtype.is_floating_point
        else torch.full((1000,), 0.1, dtype=dtype)
    )
    stats, hist = tensor_summary(x)
    assert stats.std == 0.0
    assert stats.mean == stats.min == stats.max
    assert hist.counts.sum() == 1000 and hist.counts.max() == 1000
    assert_exact(x)


def test_more_than_2_to_the_24_in_one_bin_is_counted_exactly() -> None:
    # fp32 counts (torch.histc) stop at 16,777,216; ours are int64.
    zeros = torch.zeros(17_000_000, dtype=torch.float16)
    zeros[0] = 1.0
    stats, hist = tensor_summary(zeros, bins=4)
    assert hist.counts[0] == 16_999_999 and hist.counts[-1] == 1
    assert stats.zero_fraction == 16_999_999 / 17_000_000
    assert tensor_histogram(zeros, bins=4).counts[0] == 16_999_999


def test_many_float32_values_in_one_bin(path: str) -> None:
    x = torch.zeros(17_000_000, dtype=torch.float32)
    x[-1] = 2.0
    stats, hist = tensor_summary(x, bins=2)
    assert hist.counts.tolist() == [16_999_999, 1]
    assert stats.mean == pytest.approx(2.0 / 17_000_000, rel=1e-12)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunk_boundaries_do_not_change_results(
    monkeypatch: pytest.MonkeyPatch, chunk: int, path: str
) -> None:
    small_chunks(monkeypatch, chunk)
    x = torch.randn(2_003, dtype=torch.float64).float()
    x[::97] = math.nan
    x[5] = math.inf
    x[chunk - 1 if chunk > 1 else 3] = 0.0
    assert_exact(x)
    assert_exact(x.double(), bins=13)
    assert_exact(torch.randn(2_003).half())


def test_statistics_against_a_float64_reference(path: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300_000, generator=g) * 3 + 1000  # large mean: cancellation-prone variance
    x64 = x.double()
    stats = tensor_stats(x)
    assert stats.mean == pytest.approx(float(x64.mean()), rel=1e-13)
    assert stats.std == pytest.approx(float(x64.std(unbiased=True)), rel=1e-9)
    assert stats.norm == pytest.approx(float(torch.linalg.vector_norm(x64)), rel=1e-13)
    stats2, _ = tensor_summary(x)
    assert stats2.std == pytest.approx(stats.std, rel=1e-9)


def test_norm_where_float32_arithmetic_overflows() -> None:
    x = torch.tensor([1e20, 1e20, -3e20, 2e20], dtype=torch.float32)
    assert not math.isfinite(float((x * x).sum()))  # float32 squares overflow
    expected = math.sqrt(sum(float(v) ** 2 for v in x.double()))
    assert tensor_stats(x).norm == pytest.approx(expected, rel=1e-15)
    assert tensor_summary(x)[0].norm == pytest.approx(expected, rel=1e-15)


def test_std_of_a_far_outlier_tensor_is_stable(path: str) -> None:
    x = torch.cat([torch.randn(100_000) * 0.01, torch.tensor([-1e6])])
    x64 = x.double()
    for stats in (tensor_stats(x), tensor_summary(x)[0]):
        assert stats.std == pytest.approx(float(x64.std()), rel=1e-9)
        assert stats.mean == pytest.approx(float(x64.mean()), rel=1e-9)


class CancelAfter(TaskState):
    """Cancels itself after ``n`` checks: the user pressing cancel in the middle of a tensor."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        if self.checks > self.n:
            self.cancel()
        super().check()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_cancel_in_the_middle_of_a_tensor(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype, path: str
) -> None:
    small_chunks(monkeypatch, 1000)
    x = torch.randn(100_000).to(dtype)
    for run in (
        lambda s: tensor_stats(x, s),
        lambda s: tensor_histogram(x, state=s),
        lambda s: tensor_summary(x, state=s),
    ):
        state = CancelAfter(3)
        with pytest.raises(Cancelled):
            run(state)
        assert state.checks == 4  # stopped at the fourth chunk, not after the tensor


def test_stale_statistics_still_give_exact_counts(path: str) -> None:
    x = torch.randn(10_000)
    other = tensor_stats(x * 0.5)  # a narrower range than x's
    hist = tensor_histogram(x, bins=16, stats=other)
    counts = reference(x, 16, (other.min, other.max))[0]
    np.testing.assert_array_equal(hist.counts, counts)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        tensor_histogram(torch.ones(3), bins=0)
    with pytest.raises(ValueError):
        tensor_summary(torch.ones(3), value_range=(1.0, 0.0))


def test_to_dict_and_csv() -> None:
    stats, hist = tensor_summary(torch.tensor([0.0, 1.0, 1.0, math.nan]), bins=2)
    assert isinstance(stats, TensorStats) and stats.to_dict()["nan"] == 1
    assert hist.to_csv().splitlines()[1:3] == ["0.0,0.5,1", "0.5,1.0,2"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lo=st.floats(-1e4, 1e4, allow_nan=False, width=32),
    width=st.floats(1e-6, 1e4, allow_nan=False),
    bins=st.integers(1, 300),
    offsets=st.lists(st.integers(-3, 3), min_size=1, max_size=40),
    user_range=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_float32_values_next_to_edges_property(
    path, lo, width, bins, offsets, user_range, seed
) -> None:
    """float32 values on and next to the edges, the hardest case for float keys."""
    edges = histogram_edges(lo, lo + width, bins)
    g = torch.Generator().manual_seed(seed)
    picked = torch.from_numpy(
        edges[torch.randint(0, bins + 1, (len(offsets),), generator=g).numpy()]
    ).float()
    values = []
    for value, step in zip(picked, offsets, strict=True):
        for _ in range(abs(step)):
            value = torch.nextafter(value, torch.tensor(math.inf if step > 0 else -math.inf))
        values.append(value)
    x = torch.stack(values)
    if not torch.isfinite(x).all():
        return
    assert_exact(x, bins=bins, value_range=(lo, lo + width) if user_range else None)


def test_histogram_to_dict_keeps_the_nonfinite_counts_beside_the_bars() -> None:
    data = torch.tensor([0.0, 1.0, float("nan"), float("inf"), float("-inf"), float("-inf")])
    out = tensor_histogram(data, bins=2).to_dict()
    assert out["counts"] == [1, 1] and len(out["edges"]) == 3
    assert (out["nan"], out["posinf"], out["neginf"]) == (1, 1, 2)


def test_float32_random_data_on_both_paths(path: str) -> None:
    """Pairs of keys and an odd last value, many and few bins, a user range, zeros counted."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4_001, generator=g) * 0.02
    x[::413] = 0.0
    x[7] = -0.0
    assert_exact(x)
    assert_exact(x, bins=300)
    assert_exact(x, bins=5, value_range=(-0.01, 0.03))
    stats, _ = tensor_summary(x)
    assert stats.zero_fraction == int((x == 0).sum()) / x.numel()


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")
def test_compiled_and_torch_loops_give_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(200_000, generator=g) * 3 + 1000
    monkeypatch.setattr(scan_module, "FUSED_MIN_ELEMENTS", 0)
    compiled = tensor_summary(x, bins=37)
    assert kernels.loaded()
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    plain = tensor_summary(x, bins=37)
    np.testing.assert_array_equal(compiled[1].counts, plain[1].counts)
    assert compiled[0].zero_fraction == plain[0].zero_fraction
    assert compiled[0].std == pytest.approx(plain[0].std, rel=1e-12)


def test_an_unusable_numba_falls_back_to_the_torch_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    monkeypatch.setattr(scan_module, "FUSED_MIN_ELEMENTS", 1000)
    kernels._compiled.cache_clear()
    try:
        assert not kernels.load() and not kernels.loaded()
        x = torch.randn(
            scan_module.FUSED_MIN_ELEMENTS + 1, generator=torch.Generator().manual_seed(5)
        )
        stats, hist = tensor_summary(x)
        np.testing.assert_array_equal(hist.counts, reference(x)[0])
        assert stats.min == float(x.min())
    finally:
        kernels._compiled.cache_clear()  # the next use loads the real loops again


def test_the_compiled_loops_load_only_for_a_read_that_pays_for_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # loading them costs ~0.7 s: GPT-2's 124M float32 values would wait longer than they save
    loads: list[int] = []
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    monkeypatch.setattr(kernels, "loaded", lambda: False)
    monkeypatch.setattr(kernels, "load", lambda: loads.append(1) or True)
    assert not stats_module.prefer_compiled(124_439_808)
    assert not loads
    assert stats_module.prefer_compiled(scan_module.FUSED_MIN_ELEMENTS)
    assert loads == [1]


_SMALL_MODEL_PROBE = """
import sys, torch
from paramscope.core.model.model_statistics import compute_model_statistics
from paramscope.core.model.report import build_report
model = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.Linear(2048, 2048))
compute_model_statistics(model, build_report(model))
print("numba" in sys.modules)
"""


def test_statistics_of_a_small_model_never_import_numba() -> None:
    """4M float32 values in a fresh process: the torch loops, without a second spent on numba."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _SMALL_MODEL_PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]


_CACHE_PROBE = """
from paramscope.core.model import kernels
assert kernels.load()
stats = kernels._compiled().moments.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), kernels.cache_folder())
"""


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba is not installed")
def test_the_compiled_loops_are_cached_in_the_users_cache_folder(tmp_path: Path) -> None:
    """The first run compiles into ~/.cache/paramscope/numba; the next one only loads."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)

    def run() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    folder = tmp_path / ".cache" / "paramscope" / "numba"
    assert run() == ["0", "1", str(folder)]  # compiled, and written there
    assert list(folder.rglob("*.nbi"))
    assert run() == ["1", "0", str(folder)]  # loaded, not compiled again


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")
@settings(max_examples=300, deadline=None)
@given(
    lo=st.floats(-1e4, 1e4, allow_nan=False, width=32),
    width=st.sampled_from([0.0, 1e-30, 1e-6, 1e-3, 1.0, 3.0, 1e3, 1e30, 1e39]),
    bins=st.integers(1, 300),
    inside=st.booleans(),
    shift_from=st.floats(-2.0, 2.0),
    window=st.integers(1, 4),
)
def test_compiled_edge_check_equals_the_numpy_one(lo, width, bins, inside, shift_from, window) -> None:
    # the compiled check replaces ~25 numpy calls per tensor; it must find the very same values
    # (including None when a window is too small, which window=1 provokes)
    hi = lo + width
    edges = histogram_edges(float(lo), float(hi), bins)
    near = min(max(lo + shift_from * max(width, 1.0), -3e38), 3e38)  # a float32 data minimum
    shift = float(lo) if inside else float(np.float32(near))
    keymap = pass_module.KeyMap(edges, shift, inside)
    with patch.object(pass_module, "EDGE_WINDOW", window):
        reference = pass_module.misassigned(torch.float32, keymap, fused=False)
        compiled = pass_module.misassigned(torch.float32, keymap, fused=True)
    if reference is None:
        assert compiled is None
    else:
        assert compiled is not None and sorted(compiled) == sorted(reference)


def test_a_constant_past_two_to_the_53_has_its_bar_beside_a_nan() -> None:
    """Widened by 0.5, 1e30 is still 1e30: bars of no width (numpy refuses the range). The
    values go in the last bar, as numpy's rule puts a value on the last edge; the key
    arithmetic divided by the zero step ("unexpected error" on inspect and diff)."""
    values = torch.tensor([1e30, 1e30, math.nan], dtype=torch.float64)
    stats, histogram = tensor_summary(values, bins=4)
    assert (histogram.counts.tolist(), histogram.nan, stats.mean, stats.std) == ([0, 0, 0, 2], 1, 1e30, 0.0)
    assert tensor_histogram(values, bins=4).counts.tolist() == [0, 0, 0, 2]
    spread = torch.tensor([0.0, 1e30, 2e30], dtype=torch.float64)
    assert tensor_histogram(spread, bins=4, value_range=(1e30, 1e30)).counts.tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize(
    "values",
    [
        [-1e308, 1e308, 0.0],
        [3e200, 3e200, 3e200, -3e200],
        [1e300, 1e-300, 0.0, -2e299, math.nan, math.inf, 5.0],
        [1e-200, -3e-200, 2e-200, 0.0],
        [5e-324, -1e-323, 0.0, 2e-323],
    ],
    ids=["both-ends-of-float64", "past-1e154", "with-tiny-nan-inf", "below-1e-154", "subnormal"],
)
def test_values_past_1e154_give_the_statistics_of_exact_arithmetic(values: list[float]) -> None:
    """float64 squares overflow past ~1.3e154 and a range ``hi - lo`` past ~9e307: the std and
    norm came out NaN, the mean of [-1e308, 1e308, 0] 1e308 (it is 0) and the bin edges NaN.
    Squares below ~1e-154 vanish: the std and norm of [1e-200, -3e-200, 2e-200] came out 0."""
    x = torch.tensor(values, dtype=torch.float64)
    finite = [Fraction(v) for v in values if math.isfinite(v)]
    mean = sum(finite) / len(finite)
    scale = Fraction(2) ** 600  # exact rationals, scaled only to take the float square roots
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1) / scale**2) * 2.0**600
    norm = math.sqrt(sum(v * v for v in finite) / scale**2) * 2.0**600
    zeros = sum(v == 0 for v in values) / len(values)
    with patch.object(scan_module, "CHUNK_ELEMENTS", 2):  # one chunk, and many
        for chunked in (False, True):
            summaries = [tensor_stats(x), tensor_summary(x, bins=32)[0]] if chunked else [tensor_stats(x)]
            for stats in summaries:
                assert stats.mean == pytest.approx(float(mean), rel=1e-15, abs=1e-15 * float(max(map(abs, finite))))
                assert stats.std == pytest.approx(std, rel=1e-14)
                assert stats.norm == pytest.approx(norm, rel=1e-14)
                assert (stats.min, stats.max, stats.zero_fraction) == (min(finite), max(finite), zeros)
    half = x / 2  # numpy's own edges and counts would overflow: the same at half the values, doubled
    half_edges = histogram_edges(float(min(finite) / 2), float(max(finite) / 2), 32)
    finite_values = np.array([v for v in values if math.isfinite(v)])
    for histogram in all_histograms(x, bins=32):
        np.testing.assert_array_equal(histogram.counts, np.histogram(finite_values, bins=histogram.edges)[0])
        assert histogram.counts.sum() == len(finite_values)
        if min(abs(v) for v in finite if v) > 1e-300:  # (halving a subnormal rounds it)
            np.testing.assert_array_equal(histogram.edges, half_edges * 2)
            np.testing.assert_array_equal(histogram.counts, reference(half, bins=32)[0])


def test_a_histogram_range_wider_than_float64_has_finite_edges() -> None:
    x = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    for histogram in all_histograms(x, bins=4, value_range=(-1e308, 1e308)):
        np.testing.assert_array_equal(histogram.edges, [-1e308, -5e307, 0.0, 5e307, 1e308])
        assert histogram.counts.tolist() == [0, 1, 2, 0]
