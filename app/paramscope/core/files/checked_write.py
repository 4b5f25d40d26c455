"""Comparing an export's bytes with the model while the file is still being written.

An export reads its file back and compares it with the model bit for bit. Done after the whole
file is written, that compare is one more pass over all the bytes (~100 ms for GPT-2 here) after
the writer has finished. :class:`CheckingFile` instead hands each stretch it has written to a
helper thread, which maps it (the page cache) and compares it with the tensor's memory (``memcmp``,
which releases the GIL) on the other core while the writer goes on.

Only writes that come straight from a tensor the export holds are compared this way, because only
their memory is sure to stay valid until the helper gets to it. Everything else (headers, the
pickle, copies a serializer made) is left to the check after the file is complete, which parses
the file and compares whatever this did not cover (see ``export._verify``).
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from paramscope.core import libc
from paramscope.core.atomic import WritebackFile, start_writeback

if TYPE_CHECKING:
    from typing_extensions import Buffer

PIECE = 16 << 20  # hand over every 16 MiB: the compare trails the writer by about one piece
MIN_CHECKED = 64 << 10  # smaller writes are left to the check after writing


def memcmp() -> Callable[..., int] | None:
    """The C library's memcmp (it releases the GIL), or None where there is none."""
    return libc.function("memcmp", (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t))


@dataclass(frozen=True)
class Span:
    """``length`` bytes at ``offset`` in the file that equal the memory at ``address``."""

    offset: int
    address: int
    length: int


class SourceMemory:
    """The memory of the tensors being written: addresses that stay valid for the whole export."""

    def __init__(self, tensors: Iterable[torch.Tensor]) -> None:
        ranges: dict[int, int] = {}
        self._keep: list[torch.Tensor] = []  # alive while a helper may still read them
        for tensor in tensors:
            if tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            if storage.nbytes():
                start = storage.data_ptr()
                ranges[start] = max(ranges.get(start, 0), storage.nbytes())
                self._keep.append(tensor)
        self._starts = sorted(ranges)
        self._ends = [start + ranges[start] for start in self._starts]

    def holds(self, address: int, length: int) -> bool:
        """Whether ``length`` bytes at ``address`` lie inside one of the tensors' storages."""
        at = bisect.bisect_right(self._starts, address) - 1
        return at >= 0 and address + length <= self._ends[at]


class CheckedSpans:
    """The stretches of a file found equal to tensor memory, merged where they continue."""

    def __init__(self, spans: Iterable[Span] = ()) -> None:
        merged: list[Span] = []
        for span in sorted(spans, key=lambda s: s.offset):
            last = merged[-1] if merged else None
            if (
                last is not None
                and last.offset + last.length == span.offset
                and last.address + last.length == span.address
            ):
                merged[-1] = Span(last.offset, last.address, last.length + span.length)
            else:
                merged.append(span)
        self._spans = merged
        self._offsets = [span.offset for span in merged]

    def __len__(self) -> int:
        return len(self._spans)

    def covers(self, offset: int, address: int, length: int) -> bool:
        """Whether the file's ``length`` bytes at ``offset`` were found equal to those at ``address``."""
        at = bisect.bisect_right(self._offsets, offset) - 1
        if at < 0:
            return False
        span = self._spans[at]
        inside = offset - span.offset
        return inside + length <= span.length and span.address + inside == address


def _address(view: memoryview) -> int:
    """Where a (possibly read-only) buffer's bytes are: ctypes only takes writable ones."""
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


class _Comparer:
    """The helper thread: reads each written span back and compares it with its source."""

    def __init__(self, path: Path, compare: Callable[..., int]) -> None:
        self._compare = compare
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115  (closed in join)
        self._todo: queue.SimpleQueue[Span | None] = queue.SimpleQueue()
        self._abandoned = False
        self.equal: list[Span] = []
        self._thread = threading.Thread(target=self._run, name="paramscope-readback", daemon=True)
        self._thread.start()

    def put(self, span: Span) -> None:
        self._todo.put(span)

    def abandon(self) -> None:
        """Skip what is still queued: the write failed, nobody will ask."""
        self._abandoned = True

    def join(self) -> None:
        self._todo.put(None)
        self._thread.join()
        self._file.close()

    def _run(self) -> None:
        while (span := self._todo.get()) is not None:
            if self._abandoned:
                continue
            try:
                if self._same(span):
                    self.equal.append(span)
            except (OSError, ValueError):  # unreadable or shorter: the check after writing reports
                pass
            # Start the disk on what is checked, from this thread: a file system that flushes
            # a file when it replaces another (ext4) would otherwise do it in the rename, on
            # the caller's path (~0.2 s per 500 MB here).
            start_writeback(self._file.fileno(), span.offset, span.length)

    def _same(self, span: Span) -> bool:
        # Mapped, not read: pread copies the page cache at ~2 GB/s here, a map compares in place
        # (~6 GB/s for page-cache pages of a file just written).
        start = span.offset - span.offset % mmap.ALLOCATIONGRANULARITY
        length = span.offset + span.length - start
        with mmap.mmap(self._file.fileno(), length, access=mmap.ACCESS_READ, offset=start) as mapped:
            view = np.frombuffer(mapped, dtype=np.uint8)  # a read-only map's address
            try:
                address = int(view.ctypes.data) + span.offset - start
                return self._compare(address, span.address, span.length) == 0
            finally:
                del view  # before the map closes


class CheckingFile(WritebackFile):
    """A :class:`WritebackFile` that compares what it wrote from ``sources`` as it goes.

    After ``close()``, :attr:`checked` holds the stretches found equal to their source memory;
    anything else (small writes, bytes from elsewhere, a mismatch) is simply not in it. The helper
    also starts the disk on each stretch it checked, so the writer itself never does.
    """

    def __init__(self, path: Path | str, sources: SourceMemory) -> None:
        super().__init__(path, writeback=False)
        self._path = Path(path)
        self._sources = sources
        self._comparer: _Comparer | None = None
        self.checked = CheckedSpans()

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        compare = memcmp()
        if total < MIN_CHECKED or compare is None:
            return super().write(view)
        address = _address(view)
        if not self._sources.holds(address, total):
            return super().write(view)
        if self._comparer is None:
            self._comparer = _Comparer(self._path, compare)
        for start in range(0, total, PIECE):
            piece = view[start : start + PIECE]
            offset = self.position
            super().write(piece)
            self._comparer.put(Span(offset, address + start, len(piece)))
        return total

    def close(self) -> None:
        try:
            super().close()
        finally:
            comparer, self._comparer = self._comparer, None
            if comparer is not None:
                comparer.join()
                self.checked = CheckedSpans(comparer.equal)

    def failed(self) -> None:
        if self._comparer is not None:
            self._comparer.abandon()
