"""Fresh tensors whose memory is ready before they are written (Linux; elsewhere plain).

Why: an undoable edit writes its new values into new memory (the old tensor is the undo state).
On first touch every 4 KiB page of it faults and is zeroed by the kernel one by one, which made
an init through the app 1.3-1.5x the bare in-place ``torch.nn.init`` call on a GPT-2-sized
model. Asking the kernel for huge pages (``MADV_HUGEPAGE``) and to populate the range in one call
(``MADV_POPULATE_WRITE``, Linux 5.14+) removes those faults; huge pages also spare the TLB
misses of the write itself, so the edit runs about as fast as in place, or faster.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys
from collections.abc import Callable

import torch

# Below this the faults cost little and the memory may share pages with other allocations.
MIN_BYTES = 4 << 20
_MADV_HUGEPAGE = 14
_MADV_POPULATE_WRITE = 23


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def prepare_pages(tensor: torch.Tensor) -> bool:
    """Back the whole pages of ``tensor``'s storage with memory now, huge pages where allowed.

    Best effort, and the values are untouched: returns False where it cannot (not Linux, an
    older kernel, a small or non-CPU tensor).

    Example:
        >>> t = torch.empty(1 << 21)
        >>> prepare_pages(t) in (True, False)
        True
    """
    madvise = _madvise()
    if madvise is None or tensor.device.type != "cpu":
        return False
    storage = tensor.untyped_storage()
    nbytes = storage.nbytes()
    if nbytes < MIN_BYTES:
        return False
    start = storage.data_ptr()
    begin = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages only: never a neighbour's
    end = (start + nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    madvise(begin, end - begin, _MADV_HUGEPAGE)  # refused when huge pages are off: fine
    return madvise(begin, end - begin, _MADV_POPULATE_WRITE) == 0


def empty_like_ready(tensor: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(tensor)`` with its memory populated (see :func:`prepare_pages`)."""
    fresh = torch.empty_like(tensor)
    prepare_pages(fresh)
    return fresh


def clone_ready(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor.clone()`` into populated memory (same strides as ``empty_like``)."""
    fresh = empty_like_ready(tensor)
    fresh.copy_(tensor)
    return fresh
