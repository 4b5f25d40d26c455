"""A plain zip checkpoint built straight from the inert scan of its pickle.

Every ``.pt`` is scanned inertly first (:mod:`pickle_scan`); ``torch.load(weights_only=True)``
then unpickles the same bytes again in pure Python, about 90 microseconds per tensor (9 s for
100,000 tiny tensors). When the scanned pickle holds nothing but containers, tensors
(``_rebuild_tensor_v2``) and parameters, :func:`build_plain` makes the objects torch would make
from the scan's tree, with public torch calls and one plain read per storage. Anything else,
or anything torch would refuse or treat specially, returns None and ``torch.load`` reads the
file as before: this path never accepts what torch's loader would not.
"""

from __future__ import annotations

import struct
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from paramscope.core.files.pickle_scan import PickleScan, _Inert
from paramscope.core.files.regions import RUN_BYTES, SMALL_BYTES, FileStamp
from paramscope.core.files.safety import bad_file
from paramscope.core.tasks import STEP_STRIDE, TaskState

_DTYPES: dict[str, torch.dtype] = {
    "torch.DoubleStorage": torch.float64, "torch.FloatStorage": torch.float32,
    "torch.HalfStorage": torch.float16, "torch.BFloat16Storage": torch.bfloat16,
    "torch.LongStorage": torch.int64, "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16, "torch.CharStorage": torch.int8,
    "torch.ByteStorage": torch.uint8, "torch.BoolStorage": torch.bool,
    "torch.ComplexDoubleStorage": torch.complex128, "torch.ComplexFloatStorage": torch.complex64,
    "torch.UntypedStorage": torch.uint8,
}
_TENSOR = "torch._utils._rebuild_tensor_v2"
_PARAMETER = "torch._utils._rebuild_parameter"
_ORDERED = "collections.OrderedDict"
_GLOBALS = frozenset({_TENSOR, _PARAMETER, _ORDERED, *_DTYPES})
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, then file name and extra field lengths
_MAX_DEPTH = 200  # the scan refuses nesting beyond 100


class _NotPlain(Exception):
    """Something torch's own loader must handle (or refuse, with its own message)."""


class _Builder:
    def __init__(
        self,
        path: Path,
        handle: BinaryIO,
        records: dict[str, zipfile.ZipInfo],
        prefix: str,
        progress: _Progress | None = None,
    ) -> None:
        self._path = path
        self._progress = progress
        self._handle = handle
        self._records = records
        self._data = f"{prefix}/data/" if prefix else "data/"
        self._built: dict[int, Any] = {}  # id of a scanned node -> its object (shared stays shared)
        self._storages: dict[str, tuple[torch.UntypedStorage, torch.dtype]] = {}
        self._early: dict[str, tuple[bytearray, int]] = {}  # key -> (run buffer, its record's place)

    def read_small(self, keys: Iterable[str]) -> None:
        """Read the small stored records of ``keys`` ahead, many per read: one read per run of
        neighbouring records, each storage later a view of its own bytes of the run's buffer
        (:meth:`_read`). 100,000 tiny tensors were 400,000 seeks and reads."""
        by_offset = sorted(self._records.values(), key=lambda r: r.header_offset)
        following = {id(r): n.header_offset for r, n in zip(by_offset, by_offset[1:], strict=False)}
        small = [
            (key, record) for key in keys
            if (record := self._records.get(self._data + key)) is not None
            and record.compress_type == zipfile.ZIP_STORED and record.file_size <= SMALL_BYTES
        ]  # fmt: skip
        small.sort(key=lambda item: item[1].header_offset)
        run: list[tuple[str, zipfile.ZipInfo]] = []
        for item in small:
            offset = item[1].header_offset
            if run and (following.get(id(run[-1][1])) != offset or offset - run[0][1].header_offset > RUN_BYTES):
                self._read_run(run, following)  # not the next record, or the run is full
                run = []
            run.append(item)
        if run:
            self._read_run(run, following)

    def _read_run(self, run: list[tuple[str, zipfile.ZipInfo]], following: dict[int, int]) -> None:
        """Read neighbouring records at once; note where each one's data lies in the buffer."""
        start = run[0][1].header_offset // 64 * 64  # torch aligns record data to 64 bytes
        last = run[-1][1]
        end = following.get(id(last), last.header_offset + _LOCAL_HEADER.size + 2 * 65535 + last.file_size)
        self._handle.seek(start)
        buffer = bytearray(self._handle.read(end - start))
        for key, record in run:
            at = record.header_offset - start
            if len(buffer) < at + _LOCAL_HEADER.size:
                return  # the file ends early: :meth:`_read` says so
            signature, name_len, extra_len = _LOCAL_HEADER.unpack_from(buffer, at)
            data = at + _LOCAL_HEADER.size + name_len + extra_len
            if signature == b"PK\x03\x04" and data + record.file_size <= len(buffer):
                self._early[key] = (buffer, data)

    def build(self, node: Any, depth: int = 0) -> Any:
        if node is None or isinstance(node, str | int | float | bytes):  # bool is an int
            return node
        done = self._built.get(id(node))
        if done is not None:
            return done
        if depth > _MAX_DEPTH:
            raise _NotPlain
        kind = type(node)
        if kind is dict:
            out: Any = {self.build(k, depth + 1): self.build(v, depth + 1) for k, v in node.items()}
        elif kind is list:
            out = [self.build(v, depth + 1) for v in node]
        elif kind is tuple:
            out = tuple(self.build(v, depth + 1) for v in node)
        elif isinstance(node, _Inert):
            out = self._inert(node, depth)
        else:
            raise _NotPlain
        self._built[id(node)] = out
        return out

    def _inert(self, node: _Inert, depth: int) -> Any:
        name = node._qualname
        if name == _TENSOR:
            return self._tensor(node)
        if name == _PARAMETER:
            return self._parameter(node)
        if name == _ORDERED:
            return self._ordered(node, depth)
        raise _NotPlain

    def _ordered(self, node: _Inert, depth: int) -> OrderedDict[Any, Any]:
        fields = node.__dict__
        if node.args or not set(fields) <= {"args", "items", "state"}:
            raise _NotPlain
        out: OrderedDict[Any, Any] = OrderedDict(
            (self.build(k, depth + 1), self.build(v, depth + 1)) for k, v in fields.get("items", {}).items()
        )
        if "state" in fields:  # torch: BUILD on an OrderedDict updates its __dict__ (_metadata)
            state = self.build(fields["state"], depth + 1)
            if not isinstance(state, dict):
                raise _NotPlain
            out.__dict__.update(state)
        return out

    def _hooks(self, node: Any) -> OrderedDict[Any, Any]:
        """The empty OrderedDict torch pickles as a tensor's backward hooks."""
        if not isinstance(node, _Inert) or node._qualname != _ORDERED or set(node.__dict__) != {"args"} or node.args:
            raise _NotPlain
        return OrderedDict()

    def _tensor(self, node: _Inert) -> torch.Tensor:
        args = node.args
        if set(node.__dict__) != {"args"} or len(args) not in (6, 7) or (len(args) == 7 and args[6]):
            raise _NotPlain  # conjugate or negative bits (metadata): torch's loader sets them
        storage_ref, offset, size, stride, requires_grad, hooks = args[:6]
        if not (
            type(offset) is int and type(requires_grad) is bool and _ints(size) and _ints(stride)
        ):
            raise _NotPlain
        storage, dtype = self._storage(storage_ref)
        tensor = torch.empty((0,), dtype=dtype).set_(storage, offset, size, stride)
        tensor.requires_grad = requires_grad
        tensor._backward_hooks = self._hooks(hooks)  # as torch's _rebuild_tensor_v2 leaves it
        return tensor

    def _parameter(self, node: _Inert) -> torch.nn.Parameter:
        args = node.args
        if set(node.__dict__) != {"args"} or len(args) != 3 or type(args[1]) is not bool:
            raise _NotPlain
        data = self.build(args[0])
        if type(data) is not torch.Tensor:
            raise _NotPlain
        param = torch.nn.Parameter(data, args[1])
        param._backward_hooks = self._hooks(args[2])
        return param

    def _storage(self, ref: Any) -> tuple[torch.UntypedStorage, torch.dtype]:
        """torch's persistent_load: the first reference to a key reads it; an empty one is
        never shared (torch keeps only storages with data)."""
        if type(ref) is not _Inert or set(ref.__dict__) != {"args"} or len(ref.args) != 1:
            raise _NotPlain
        pid = ref.args[0]
        if type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage":
            raise _NotPlain
        _, kind, key, location, numel = pid
        dtype = _DTYPES.get(getattr(kind, "_qualname", ""))
        if dtype is None or type(key) is not str or type(location) is not str or type(numel) is not int or numel < 0:
            raise _NotPlain
        known = self._storages.get(key)
        if known is not None:
            return known
        nbytes = numel * dtype.itemsize
        loaded = (self._read(key, nbytes, dtype.itemsize), dtype)
        if self._progress is not None:
            self._progress.read(nbytes)
        if nbytes:
            self._storages[key] = loaded
        return loaded

    def _read(self, key: str, nbytes: int, itemsize: int) -> torch.UntypedStorage:
        record = self._records.get(self._data + key)
        if record is None or record.compress_type != zipfile.ZIP_STORED or record.file_size < nbytes:
            raise _NotPlain  # the checks before the scan refuse these; torch reads deflated ones
        early = self._early.pop(key, None)
        if early is not None and nbytes:  # read ahead (:meth:`read_small`): its own bytes, no copy
            buffer, at = early
            data = torch.frombuffer(buffer, dtype=torch.uint8, count=nbytes, offset=at)
            return (data if data.data_ptr() % itemsize == 0 else data.clone()).untyped_storage()
        handle = self._handle
        handle.seek(record.header_offset)
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        if signature != b"PK\x03\x04":
            raise bad_file(self._path, f"is a damaged zip archive (no local header for {record.filename!r})")
        handle.seek(record.header_offset + 30 + name_len + extra_len)
        data = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes and handle.readinto(data.numpy()) != nbytes:
            raise bad_file(self._path, f"is truncated: storage {key!r} ends early")
        return data.untyped_storage()


def _ints(value: Any) -> bool:
    return type(value) is tuple and all(type(v) is int for v in value)


def _native_order(handle: BinaryIO, records: dict[str, zipfile.ZipInfo], prefix: str) -> bool:
    """Whether the storages are in this machine's byte order (torch byte-swaps otherwise)."""
    record = records.get(f"{prefix}/byteorder" if prefix else "byteorder")
    if record is None:
        return True  # torch swaps nothing without the record
    if record.compress_type != zipfile.ZIP_STORED or record.file_size > 16:
        return False
    handle.seek(record.header_offset)
    signature, name_len, extra_len = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    handle.seek(record.header_offset + 30 + name_len + extra_len)
    return signature == b"PK\x03\x04" and handle.read(record.file_size) == sys.byteorder.encode()


class _Progress:
    """Bytes and storages read so far, reported every :data:`STEP_STRIDE` storages or 64 MB:
    a million tiny tensors, or a few of gigabytes each."""

    def __init__(self, state: TaskState, total_bytes: int) -> None:
        self.state, self.total = state, max(total_bytes, 1)
        self.done = self.count = self.reported = 0

    def read(self, nbytes: int) -> None:
        self.done += nbytes
        self.count += 1
        if not self.count % STEP_STRIDE or self.done - self.reported > 1 << 26:
            self.reported = self.done
            self.state.progress(self.done / self.total, "reading the tensors")


def build_plain(
    path: Path, scan: PickleScan, records: dict[str, zipfile.ZipInfo], prefix: str, state: TaskState | None = None
) -> Any | None:
    """What ``torch.load(path, map_location="cpu", weights_only=True)`` returns, or None when
    the pickle holds anything but containers, tensors and parameters (torch loads it then).
    ``state``: progress (by bytes read) and cancel.

    Raises:
        SourceError: the file changed while it was read, or a storage ends early.
    """
    if not set(scan.globals) <= _GLOBALS:
        return None
    with open(path, "rb") as handle:
        stamp = FileStamp.of(path, handle)
        if not _native_order(handle, records, prefix):
            return None
        try:
            progress = _Progress(state, scan.declared_bytes) if state is not None else None
            builder = _Builder(path, handle, records, prefix, progress)
            builder.read_small(scan.storages)
            loaded = builder.build(scan.top_level)
        except (_NotPlain, RuntimeError, TypeError, ValueError, OverflowError, struct.error):
            return None  # torch's loader decides (and words any refusal) as before
        stamp.check(handle)  # rewritten while being read: the values may be a mix
    return loaded
