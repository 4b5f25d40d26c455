"""Fresh tensors' pages are faulted in on a helper thread; values and errors are untouched."""

from __future__ import annotations

import resource
import threading

import pytest
import torch

from paramscope.core import prefault
from paramscope.core.prefault import prefaulted


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not prefault.available(), reason="needs Linux 5.14+ (MADV_POPULATE_WRITE)")
def test_pages_are_faulted_in_before_the_body_writes_them() -> None:
    fresh = torch.empty(64 << 20, dtype=torch.uint8)  # 64 MiB: mmapped, no page touched yet
    with prefaulted([fresh]):
        pass  # the exit joins the thread (it may be stopped before the end: populate again)
    prefault._populate([fresh], threading.Event())
    before = _minor_faults()
    fresh.fill_(7)
    assert _minor_faults() - before < 64  # 16,384 pages, already present: only the edges fault
    assert bool((fresh == 7).all())


def test_contents_are_never_changed_and_the_thread_is_gone_after_the_block() -> None:
    values = torch.arange(8 << 20, dtype=torch.float32)  # 32 MiB, above MIN_BYTES
    expected = values.clone()
    with prefaulted([values]):
        pass
    assert torch.equal(values, expected)
    assert not any(t.name == "paramscope-prefault" for t in threading.enumerate())


def test_an_error_in_the_body_propagates_and_joins_the_thread() -> None:
    fresh = [torch.empty(4 << 20) for _ in range(4)]
    with pytest.raises(ZeroDivisionError), prefaulted(fresh):
        raise ZeroDivisionError
    assert not any(t.name == "paramscope-prefault" for t in threading.enumerate())


def test_small_or_non_cpu_sets_start_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[object] = []
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self))
    with prefaulted([torch.empty(1000), torch.empty(3, 3, device="meta")]):
        pass
    assert started == []
