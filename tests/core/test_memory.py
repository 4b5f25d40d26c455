"""Fresh tensors for edits come with their memory populated (Linux), values untouched."""

from __future__ import annotations

import sys

import psutil
import pytest
import torch

from paramscope.core.memory import MIN_BYTES, clone_ready, empty_like_ready, prepare_pages


def test_small_and_non_cpu_tensors_are_left_alone() -> None:
    assert not prepare_pages(torch.empty(10))
    assert not prepare_pages(torch.empty(1000, device="meta"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise populate is Linux-only")
def test_populated_memory_is_resident_before_any_write() -> None:
    process = psutil.Process()
    size = 64 << 20
    fresh = torch.empty(size // 4)
    before = process.memory_info().rss
    if not prepare_pages(fresh):
        pytest.skip("this kernel has no MADV_POPULATE_WRITE (Linux < 5.14)")
    grown = process.memory_info().rss - before
    assert grown > 0.9 * size  # the pages are there without a single element written
    del fresh


def test_ready_copies_equal_plain_ones() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(MIN_BYTES // 4 + 3, generator=g)
    assert torch.equal(clone_ready(x), x)
    t = torch.randn(2048, 1024, generator=g).t()  # strided: the copy keeps its layout
    copy = clone_ready(t)
    assert torch.equal(copy, t) and copy.stride() == t.clone().stride()
    empty = empty_like_ready(t)
    assert empty.shape == t.shape and empty.dtype == t.dtype
