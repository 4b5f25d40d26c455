"""What a pickle scan may read, run and hold, relative to the storages the pickle declares.

:mod:`~paramscope.core.files.pickle_scan` runs before anything else looks at a file, so a hostile
pickle must not make it slow or large: :class:`ScanLimits` caps its opcodes, memo and bytes,
:class:`BoundedStream` counts every byte it reads, and what goes beyond is refused with
:class:`ScanLimitError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

# What a real checkpoint's pickle costs, measured on torch.save files (torch 2.13, protocols 2
# and 4): GPT-2 (160 storages) 5,060 opcodes, 1,287 memo entries, 17.6 KB; GPT-2 XL (628
# storages) 19,820 opcodes, 71.7 KB; 10,000 one-element tensors 300,031 opcodes, 80,006 memo
# entries, 947 KB; a model with its AdamW state 44 opcodes per storage. That is about 30 opcodes,
# 8 memo entries and 100 bytes per tensor, and MARK nesting of at most 6. The limits allow ten
# times that per storage declared, on top of a base that covers any small file and tens of
# thousands of views of one storage (a view costs opcodes but declares no storage): a real
# checkpoint stays far below them, while a NONE bomb (400 M opcodes from 400 KB of deflate) is
# refused after a second of work.
_BASE_OPCODES = 1_000_000  # about a second of the pure-Python unpickler
_OPCODES_PER_STORAGE = 300
_BASE_MEMO = 250_000
_MEMO_PER_STORAGE = 100
_BASE_BYTES = 32 * 1024 * 1024
_BYTES_PER_STORAGE = 4096  # a tensor's pickle is ~100 bytes plus its name
MAX_STACK = 100_000  # the pickler batches containers by 1,000 items: its stack stays small
MAX_MARKS = 100  # open MARKs (nested tuples, lists, dicts being built); real files: <= 6
MAX_NESTING = 100  # containers within containers; readers walk them recursively
CHECK_EVERY = 1024  # opcodes between checks of the memo and stack sizes


@dataclass(frozen=True)
class ScanLimits:
    """What a scan may run, hold and read for a pickle declaring ``storages`` storages."""

    storages: int

    @property
    def opcodes(self) -> int:
        return _BASE_OPCODES + _OPCODES_PER_STORAGE * self.storages

    @property
    def memo(self) -> int:
        return _BASE_MEMO + _MEMO_PER_STORAGE * self.storages

    @property
    def bytes(self) -> int:
        return _BASE_BYTES + _BYTES_PER_STORAGE * self.storages


def pickle_bytes_limit(storages: int) -> int:
    """The largest pickle (in bytes) a checkpoint with ``storages`` storages is allowed."""
    return ScanLimits(storages).bytes


class ScanLimitError(Exception):
    """The pickle needs more work or memory than any real checkpoint: a one-line reason."""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def limit_error(what: str, limit: int, storages: int) -> ScanLimitError:
    return ScanLimitError(
        f"its pickle needs more than {limit:,} {what}, the limit for a checkpoint with "
        f"{_plural(storages, 'storage')}; refusing to read it"
    )


class BoundedStream:
    """The file as the unpickler reads it: every byte counted, no read larger than allowed.

    A length the pickle claims (BINBYTES8, a FRAME) is checked against the bytes still allowed
    before anything is read, so a claim of terabytes allocates nothing.
    """

    def __init__(self, stream: IO[bytes], allowed: Callable[[], ScanLimits]) -> None:
        self._read = stream.read
        self._readline = stream.readline
        self._allowed = allowed
        self._budget = allowed().bytes  # limits only grow: asked again only when exceeded
        self.consumed = 0

    def _grow(self, n: int) -> None:
        """Refuse ``n`` more bytes beyond the current limits (or a read to the end)."""
        if n < 0:
            raise ScanLimitError("its pickle asks to read to the end of the file")  # never in pickle
        limits = self._allowed()
        self._budget = limits.bytes
        if self.consumed + n > limits.bytes:
            raise limit_error("bytes", limits.bytes, limits.storages)

    def read(self, n: int = -1) -> bytes:
        if n < 0 or self.consumed + n > self._budget:  # one test on the hot path (every opcode)
            self._grow(n)
        data = self._read(n)
        self.consumed += len(data)
        return data

    def readline(self) -> bytes:
        self._grow(0)
        line = self._readline(self._budget - self.consumed + 1)
        if self.consumed + len(line) > self._budget:
            self._grow(len(line))
        self.consumed += len(line)
        return line
