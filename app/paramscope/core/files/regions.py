"""Reading tensors from a file with plain reads, never through a memory map of it.

A training job that saves over the checkpoint being viewed truncates the file in place; a mapped
page of a truncated file kills the process with SIGBUS on its next access, which Python cannot
catch. So tensors are read into the process's own memory: at open for files up to
:data:`LAZY_BYTES`, and one tensor at a time, when it is looked at, for larger ones. Each read
first checks that the file is still the one that was opened (:class:`FileStamp`); a file that
changed, or that ends early, is a one-line :class:`~paramscope.core.errors.SourceError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from paramscope.core.errors import NotInFiles
from paramscope.core.files import safety
from paramscope.core.files.safety import bad_file
from paramscope.core.tasks import TaskState, advance, part, steps

#: Files larger than this open lazily: shape-only placeholders now, a tensor's values when they
#: are looked at (the session computes statistics on demand above the same size).
LAZY_BYTES = 1 << 30
#: Tensors up to this size are read many at a time (:func:`read_regions`), in runs of up to
#: RUN_BYTES whose tensors are at most RUN_GAP bytes apart.
SMALL_BYTES = 1 << 16
RUN_BYTES = 1 << 24
RUN_GAP = 4096


def opens_lazily(lazy: bool | None, size: int) -> bool:
    """``lazy`` as asked; where it is None (automatic): a file over :data:`LAZY_BYTES` or larger
    than the memory available now."""
    if lazy is not None:
        return lazy
    return size > LAZY_BYTES or size > safety.available_memory()


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of a file: replaced, rewritten or truncated, it differs."""

    path: Path
    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, path: Path, handle: BinaryIO | None = None) -> FileStamp:
        info = os.fstat(handle.fileno()) if handle is not None else os.stat(path)
        return cls(Path(path), info.st_size, info.st_mtime_ns, info.st_ino)

    def changed(self) -> bool:
        """True when the file at ``path`` is no longer this version (or is gone)."""
        try:
            return FileStamp.of(self.path) != self
        except OSError:
            return True

    def check(self, handle: BinaryIO | None = None) -> None:
        """Raise a one-line error when the file changed since this stamp was taken."""
        try:
            now = FileStamp.of(self.path, handle)
        except OSError as exc:
            raise bad_file(self.path, f"cannot be read any more ({exc.strerror or exc}); reopen it") from None
        if now != self:
            raise changed_error(self.path)


def changed_error(path: Path) -> Exception:
    return bad_file(path, "changed on disk since it was opened (rewritten or truncated); reopen it")


@dataclass(frozen=True)
class Region:
    """Where one tensor's bytes lie in a file, and what they are."""

    offset: int  # from the start of the file
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count * self.dtype.itemsize


def read_region(handle: BinaryIO, region: Region, path: Path) -> torch.Tensor:
    """A new tensor holding ``region``'s bytes, read with ``readinto`` (no map, no extra copy)."""
    tensor = torch.empty(region.shape, dtype=region.dtype)
    if region.nbytes == 0:
        return tensor
    target = memoryview(tensor.view(-1).view(torch.uint8).numpy())
    handle.seek(region.offset)
    done = 0
    while done < region.nbytes:
        got = handle.readinto(target[done:])
        if not got:
            raise changed_error(path)  # the header said more bytes than are there now
        done += got
    return tensor


def read_regions(
    path: Path, stamp: FileStamp, regions: Iterable[tuple[str, Region]], state: TaskState | None = None
) -> dict[str, torch.Tensor]:
    """Read every region in file order; the file must still be ``stamp`` before and after.

    Small tensors lying next to each other are read together (:func:`_read_run`): a checkpoint of
    100,000 tiny tensors is a few reads, not 100,000. ``state``: progress and cancel.
    """
    ordered = sorted(regions, key=lambda item: item[1].offset)
    tensors: dict[str, torch.Tensor] = {}
    with open(path, "rb") as handle:
        stamp.check(handle)
        for run in _runs(ordered):
            share = part(state, len(tensors) / len(ordered), (len(tensors) + len(run)) / len(ordered))
            if len(run) == 1:
                advance(share, 0.0, "reading the tensors")
                name, region = run[0]
                tensors[name] = read_region(handle, region, path)
            else:
                tensors.update(_read_run(handle, run, path, share))
        stamp.check(handle)  # rewritten while being read: the values may be a mix
    return tensors


def _runs(ordered: list[tuple[str, Region]]) -> Iterator[list[tuple[str, Region]]]:
    """``ordered`` in runs of small regions that do not overlap and lie at most :data:`RUN_GAP`
    bytes apart, up to :data:`RUN_BYTES` each; a large region is a run of its own."""
    run: list[tuple[str, Region]] = []
    start = end = 0
    for item in ordered:
        offset, size = item[1].offset, item[1].nbytes
        small = size <= SMALL_BYTES
        if run and not (small and end <= offset <= end + RUN_GAP and offset + size - start <= RUN_BYTES):
            yield run
            run = []
        if not small:
            yield [item]
            continue
        if not run:
            start = offset
        run.append(item)
        end = offset + size
    if run:
        yield run


def _read_run(
    handle: BinaryIO, run: list[tuple[str, Region]], path: Path, state: TaskState | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of ``run``, read with one ``readinto`` into a buffer they then share.

    Each tensor is ``torch.frombuffer`` over its own bytes of the buffer: a storage of its own (no
    tie between neighbours, an edit changes one tensor), no copy. One whose address does not suit
    its dtype's alignment gets its own copy.
    """
    start = run[0][1].offset
    end = max(region.offset + region.nbytes for _, region in run)
    buffer = bytearray(end - start)
    target = memoryview(buffer)
    handle.seek(start)
    done = 0
    while done < len(buffer):
        got = handle.readinto(target[done:])
        if not got:
            raise changed_error(path)  # the header said more bytes than are there now
        done += got
    target.release()
    base = torch.frombuffer(buffer, dtype=torch.uint8).data_ptr()
    tensors: dict[str, torch.Tensor] = {}
    for name, region in steps(run, len(run), state, "reading the tensors"):
        itemsize = region.dtype.itemsize
        count = region.nbytes // itemsize if itemsize else 0
        if count == 0:
            tensors[name] = torch.empty(region.shape, dtype=region.dtype)
            continue
        at = region.offset - start
        tensor = torch.frombuffer(buffer, dtype=region.dtype, count=count, offset=at)
        if (base + at) % itemsize:
            tensor = tensor.clone()
        tensors[name] = tensor if len(region.shape) == 1 else tensor.view(region.shape)
    return tensors


class RegionLoader:
    """Loads one tensor of a lazily opened file by name: the ``loader`` of an opened model."""

    def __init__(self, path: Path, stamp: FileStamp, regions: dict[str, Region]) -> None:
        self.path = Path(path)
        self.stamp = stamp
        self.regions = regions

    def __call__(self, name: str) -> torch.Tensor:
        region = self.regions.get(name)
        if region is None:
            raise NotInFiles(self.path, name)
        return read_regions(self.path, self.stamp, [(name, region)])[name]
