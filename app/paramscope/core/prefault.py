"""Fault in the pages of fresh tensors on a second thread while the first one computes.

An undoable edit writes its new values into new memory (the old tensor is the undo state), and
the first write to each new page (4 KiB) costs a page fault: for GPT-2's 500 MB about 120,000 of
them, 0.2-0.3 s on one core, more than a third of ``normal_`` itself. Linux (5.14+) can fault a
range in with one ``madvise(MADV_POPULATE_WRITE)`` call; doing that on another thread, in the
order the edit will write the tensors, takes the faults off the computing thread. Contents are
never changed, so racing the writer is safe. Elsewhere (other systems, older kernels) this does
nothing.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import platform
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from paramscope.core import libc

MADV_POPULATE_WRITE = 23  # the generic Linux value; a few architectures number advice apart
_GENERIC_ADVICE_MACHINES = ("x86_64", "amd64", "i386", "i686", "aarch64", "arm64", "riscv64")
PAGE = mmap.PAGESIZE  # 4 KiB on x86; 16 or 64 KiB on some ARM kernels
#: Below this many bytes in all, the thread costs more than the faults it saves.
MIN_BYTES = 16 << 20


@functools.cache
def _madvise() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux") or platform.machine() not in _GENERIC_ADVICE_MACHINES:
        return None
    madvise = libc.function("madvise", (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int))
    if madvise is None:
        return None
    probe = ctypes.create_string_buffer(2 * PAGE)
    start = (ctypes.addressof(probe) + PAGE - 1) & ~(PAGE - 1)
    if madvise(start, PAGE, MADV_POPULATE_WRITE) != 0:  # EINVAL: kernel older than 5.14
        return None
    return madvise


def available() -> bool:
    """This system can populate pages (Linux 5.14 or newer)."""
    return _madvise() is not None


def _populate(tensors: Sequence[torch.Tensor], stop: threading.Event) -> None:
    madvise = _madvise()
    assert madvise is not None
    for tensor in tensors:
        if stop.is_set():
            return
        address = tensor.data_ptr()
        end = address + tensor.numel() * tensor.element_size()
        first = (address + PAGE - 1) & ~(PAGE - 1)  # whole pages only: the edges fault as usual
        last = end & ~(PAGE - 1)
        if last > first:
            madvise(first, last - first, MADV_POPULATE_WRITE)  # ctypes lets go of the GIL


@contextmanager
def prefaulted(tensors: Sequence[torch.Tensor]) -> Iterator[None]:
    """Fault in ``tensors``' pages, in order, on a helper thread while the body runs.

    The thread is stopped and joined before the body's exit (or exception) goes on, so the
    tensors outlive it. Nothing happens for CPU tensors under :data:`MIN_BYTES` in all, for
    other devices, or where the system cannot populate pages.

    Example:
        >>> fresh = [torch.empty(1000) for _ in range(3)]
        >>> with prefaulted(fresh):
        ...     for t in fresh:
        ...         _ = t.normal_()
    """
    cpu = [t for t in tensors if t.device.type == "cpu" and t.is_contiguous()]
    if sum(t.numel() * t.element_size() for t in cpu) < MIN_BYTES or not available():
        yield
        return
    stop = threading.Event()
    thread = threading.Thread(target=_populate, args=(cpu, stop), name="paramscope-prefault")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
