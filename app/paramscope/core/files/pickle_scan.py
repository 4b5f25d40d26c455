"""Read a pickle's structure without running anything from it, with bounded work.

:func:`scan_pickle` unpickles with a ``find_class`` that never imports: every global the pickle
names becomes an inert stand-in, so ``__reduce__`` tricks only construct stand-ins. What comes
out is the list of globals the pickle wants and the storages it declares (torch's persistent ids),
so sizes can be checked before torch allocates anything.

The scan is pure Python and runs before anything else looks at a file, so a hostile pickle must
not be able to make it slow or large: what it may read, run and hold is capped relative to the
storages it declares (:mod:`~paramscope.core.files.pickle_limits`), and beyond that it is refused
with :class:`~paramscope.core.files.pickle_limits.ScanLimitError`.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from paramscope.core.files.pickle_limits import (
    CHECK_EVERY,
    MAX_MARKS,
    MAX_NESTING,
    MAX_STACK,
    BoundedStream,
    ScanLimitError,
    ScanLimits,
    limit_error,
)
from paramscope.core.tasks import TaskState

# bytes per element for torch's typed storage class names (legacy and zip format ids)
_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
    "BoolStorage": 1, "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8,
    "UntypedStorage": 1, "QInt8Storage": 1, "QUInt8Storage": 1, "QInt32Storage": 4,
    "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
}

# globals a plain state_dict pickle uses; anything else is named in the refusal message
_PLAIN = ("torch.", "collections.OrderedDict", "builtins.set", "builtins.frozenset")


@dataclass
class StorageDecl:
    key: str
    type_name: str
    numel: int

    @property
    def nbytes(self) -> int:
        size = _STORAGE_ITEMSIZE.get(self.type_name)
        if size is None:  # float8 and friends are 1 byte; unknown ones: assume the widest
            size = 1 if "Float8" in self.type_name else 16
        return max(0, self.numel) * size


@dataclass
class PickleScan:
    globals: list[str] = field(default_factory=list)
    storages: dict[str, StorageDecl] = field(default_factory=dict)
    top_level: Any = None  # the stand-in structure (dicts, lists, stand-ins)

    @property
    def declared_bytes(self) -> int:
        return sum(s.nbytes for s in self.storages.values())

    @property
    def code_globals(self) -> list[str]:
        """Globals outside torch and the containers a state_dict uses: classes or functions."""
        return [g for g in self.globals if not g.startswith(_PLAIN)]


class _Inert:
    """What every global becomes: calling, building or setting state only records data."""

    _qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:  # getattr(...)(...) chains
        return _Inert(*args)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # OrderedDict stand-ins get SETITEMS
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("list", []).extend(values)

    @classmethod
    def __class_getitem__(cls, item: Any) -> Any:
        return cls


_LEAVES = frozenset({str, int, float, bool, bytes, type(None)})


def _children(node: Any) -> Iterable[Any] | None:
    """What a container holds (None for anything else): what readers walk recursively."""
    if type(node) in _LEAVES:
        return None
    if isinstance(node, dict):
        return [*node.keys(), *node.values()]
    if isinstance(node, list | tuple | set | frozenset):
        return node
    if isinstance(node, _Inert):  # an OrderedDict or list stand-in; object state is not walked
        fields = node.__dict__
        if "items" not in fields and "list" not in fields:  # a tensor's stand-in
            return ()
        items = fields.get("items", {})
        return [*items.keys(), *items.values(), *fields.get("list", [])]
    return None


def nesting_problem(root: Any, limit: int = MAX_NESTING) -> str | None:
    """Why walking ``root`` recursively would fail, or None: containers nested more than
    ``limit`` deep, or one that contains itself. Iterative, each container visited once."""
    if _children(root) is None:
        return None
    heights: dict[int, int] = {}  # id -> levels of containers from there down
    on_path = {id(root)}
    frames: list[list[Any]] = [[root, iter(_children(root) or ()), 0]]
    end = object()
    while frames:
        frame = frames[-1]
        child = next(frame[1], end)
        if child is end:
            frames.pop()
            on_path.discard(id(frame[0]))
            heights[id(frame[0])] = frame[2] + 1
            if frames:
                frames[-1][2] = max(frames[-1][2], frame[2] + 1)
            continue
        kids = _children(child)
        if kids is None:
            continue
        if id(child) in on_path:
            return "its pickle holds a container that contains itself"
        height = heights.get(id(child))
        if height is not None:
            frame[2] = max(frame[2], height)
            if len(frames) + height > limit:
                return f"its pickle nests containers more than {limit} levels deep"
            continue
        if len(frames) >= limit:
            return f"its pickle nests containers more than {limit} levels deep"
        on_path.add(id(child))
        frames.append([child, iter(kids), 0])
    return None


_LONG_BINPUT, _BININT1, _BINGET, _MARK, _TUPLE, _BINUNICODE, _REDUCE, _BINPERSID = (
    op[0] for op in (pickle.LONG_BINPUT, pickle.BININT1, pickle.BINGET, pickle.MARK, pickle.TUPLE,
                     pickle.BINUNICODE, pickle.REDUCE, pickle.BINPERSID)
)
_TUPLE1, _TUPLE2, _BINPUT, _STOP = (op[0] for op in (pickle.TUPLE1, pickle.TUPLE2, pickle.BINPUT, pickle.STOP))
_CONSTANTS = {pickle.NEWFALSE[0]: False, pickle.NEWTRUE[0]: True, pickle.EMPTY_TUPLE[0]: ()}


class _Framed(Exception):
    """A FRAME opcode: its bytes are buffered by the unframer, so the in-memory loop stops."""


# The pure-Python unpickler: damaged bytes cannot make it allocate what they claim (the C one
# grows its memo to any index a LONG_BINPUT names, which let a flipped bit exhaust memory); its
# memo is a dict, and the loop below counts what it runs and holds.
class _ScanUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    def __init__(
        self,
        stream: IO[bytes] | BoundedStream,
        scan: PickleScan,
        max_storages: int | None,
        known: int,
        state: TaskState | None = None,
    ) -> None:
        super().__init__(stream)
        self._scan = scan
        self._state = state  # progress (of a pickle in memory) and cancel, at each check
        self._size = 0  # bytes of a pickle in memory (:meth:`load_bytes`), for the progress
        self._classes: dict[str, type] = {}
        self._max_storages = max_storages
        self._known = known
        self.dispatch = dict(pickle._Unpickler.dispatch)
        for opcode, load in (
            (pickle.BINBYTES8, _ScanUnpickler._load_binbytes8),
            (pickle.BINUNICODE8, _ScanUnpickler._load_binunicode8),
            (pickle.BYTEARRAY8, _ScanUnpickler._load_bytearray8),
            (pickle.FRAME, _ScanUnpickler._load_frame),
        ):
            self.dispatch[opcode[0]] = load

    def limits(self) -> ScanLimits:
        """Limits grow with the storages declared so far (at most ``max_storages``)."""
        declared = len(self._scan.storages) + self._known
        if self._max_storages is not None:
            declared = min(declared, self._max_storages)
        return ScanLimits(declared)

    def _claimed(self) -> bytes:
        """The bytes an 8-byte length claims, the length checked before anything is read (the
        stock loaders allocate a BYTEARRAY8's claim at once, and read short claims silently)."""
        (length,) = struct.unpack("<Q", self.read(8))
        limits = self.limits()
        if length > limits.bytes:
            raise limit_error("bytes", limits.bytes, limits.storages)
        data = self.read(length)
        if len(data) != length:
            raise EOFError
        return data

    def _load_binbytes8(self) -> None:
        self.append(self._claimed())

    def _load_binunicode8(self) -> None:
        self.append(str(self._claimed(), "utf-8", "surrogatepass"))

    def _load_bytearray8(self) -> None:
        self.append(bytearray(self._claimed()))

    def _load_frame(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        limits = self.limits()
        if length > limits.bytes:
            raise limit_error("bytes", limits.bytes, limits.storages)
        self._unframer.load_frame(length)

    def _check(self, opcodes: int, consumed: int = 0) -> int:
        """Refuse when over a limit; return the opcode count of the next check."""
        if self._state is not None:  # (a stop raises here)
            self._state.progress(consumed / self._size if self._size else 0.0, "scanning the pickle")
        limits = self.limits()
        if consumed > limits.bytes:  # a pickle in memory (:meth:`load_bytes`)
            raise limit_error("bytes", limits.bytes, limits.storages)
        if opcodes > limits.opcodes:
            raise limit_error("opcodes", limits.opcodes, limits.storages)
        if len(self.memo) > limits.memo:
            raise limit_error("memo entries", limits.memo, limits.storages)
        if len(self.stack) > MAX_STACK:
            raise limit_error("stack entries", MAX_STACK, limits.storages)
        if len(self.metastack) > MAX_MARKS:
            raise limit_error("nested MARKs", MAX_MARKS, limits.storages)
        return min(opcodes + CHECK_EVERY, limits.opcodes + 1)

    def _start(self, read: Any, readline: Any) -> None:
        """The state ``pickle._Unpickler.load`` sets up before its loop."""
        self._unframer = pickle._Unframer(read, readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0

    def load(self) -> Any:
        """``pickle._Unpickler.load`` with a count of opcodes and checks of what it holds."""
        self._start(self._file_read, self._file_readline)
        read, dispatch = self.read, self.dispatch
        opcodes, next_check = 0, 1
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                opcodes += 1
                if opcodes >= next_check:
                    next_check = self._check(opcodes)
                dispatch[key[0]](self)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    def load_bytes(self, data: bytes) -> Any:
        """:meth:`load` over a pickle held in memory, the opcodes of a torch checkpoint run
        inline (a tenth of the calls: ~30 opcodes per tensor), each as ``pickle._Unpickler``
        runs it; any other opcode goes to its loader. Bytes are counted at each check (an
        opcode reads at most what is there). A FRAME (protocol 4) raises :class:`_Framed`:
        the caller scans again with :meth:`load`."""
        stream = io.BytesIO(data)
        self._size = len(data)
        self._file_read, self._file_readline = stream.read, stream.readline
        self._start(stream.read, stream.readline)
        self.dispatch[pickle.FRAME[0]] = _ScanUnpickler._framed
        return self._run_inline(data, stream)

    def _run_inline(self, data: bytes, stream: io.BytesIO) -> Any:
        """The loop of :meth:`load_bytes`. A BINGET of a missing index, like every opcode not
        written here, goes to the stock loader, which raises as ``pickle`` does."""
        stack, memo, unpack_from, constants = self.stack, self.memo, struct.unpack_from, _CONSTANTS
        pos, end, opcodes, next_check = 0, len(data), 0, 1
        while True:
            if pos >= end:
                raise EOFError
            op = data[pos]
            pos += 1
            opcodes += 1
            if opcodes >= next_check:
                next_check = self._check(opcodes, pos)
            if op == _LONG_BINPUT:
                (i,) = unpack_from("<I", data, pos)
                pos += 4
                memo[i] = stack[-1]
            elif op == _BININT1:
                stack.append(data[pos])
                pos += 1
            elif op == _BINGET and data[pos] in memo:
                stack.append(memo[data[pos]])
                pos += 1
            elif op == _MARK:
                self.metastack.append(stack)
                self.stack = stack = []
                self.append = stack.append
            elif op == _TUPLE:
                items = stack
                self.stack = stack = self.metastack.pop()
                self.append = stack.append
                stack.append(tuple(items))
            elif op == _BINUNICODE:
                (n,) = unpack_from("<I", data, pos)
                pos += 4
                stack.append(str(data[pos : pos + n], "utf-8", "surrogatepass"))
                pos += n
            elif op == _REDUCE:
                args = stack.pop()
                stack[-1] = stack[-1](*args)
            elif op == _BINPERSID:
                stack.append(self.persistent_load(stack.pop()))
            elif op == _TUPLE1:
                stack[-1] = (stack[-1],)
            elif op == _TUPLE2:
                stack[-2:] = [(stack[-2], stack[-1])]
            elif op in constants:
                stack.append(constants[op])
            elif op == _BINPUT:
                memo[data[pos]] = stack[-1]
                pos += 1
            elif op == _STOP:
                return stack.pop()
            else:  # the rest as the stock loader runs it, reading from the same place
                pos = self._stock(op, stream, pos)
                stack = self.stack

    def _stock(self, op: int, stream: io.BytesIO, pos: int) -> int:
        """Run ``op`` with ``pickle._Unpickler``'s loader from ``pos``; where it stopped reading."""
        stream.seek(pos)
        self.dispatch[op](self)
        return stream.tell()

    def _framed(self) -> None:
        raise _Framed

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified not in self._scan.globals:
            self._scan.globals.append(qualified)
        if qualified not in self._classes:
            # a fresh inert class per global, never the real object
            self._classes[qualified] = type(name, (_Inert,), {"_qualname": qualified})
        return self._classes[qualified]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            # never str() of what the pickle built: a deeply nested one would recurse
            qualified = getattr(pid[1], "_qualname", pid[1])
            type_name = qualified.rpartition(".")[2] if isinstance(qualified, str) else "?"
            key = pid[2] if isinstance(pid[2], str | int) else "?"
            numel = pid[4] if isinstance(pid[4], int) else 0
            self._scan.storages[str(key)] = StorageDecl(str(key), type_name, numel)
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module" and isinstance(pid[1], type):
            return pid[1]  # legacy format: a pickled module's class (its stand-in), as torch does
        return _Inert(pid)


def scan_pickle(
    stream: IO[bytes] | bytes,
    scan: PickleScan | None = None,
    max_storages: int | None = None,
    known_storages: int = 0,
    state: TaskState | None = None,
) -> PickleScan:
    """Unpickle ``stream`` inertly and report globals and declared storages.

    Args:
        stream: the pickle's bytes, or a file positioned at it (left just after it).
        scan: a scan to add to (its storages count as declared).
        max_storages: at most this many storages raise the limits (those the file can hold).
        known_storages: storages the file declared elsewhere (legacy format: the key list
            that follows the object counts them).
        state: progress and cancel (a pickle of a million tensors takes half a minute).

    Raises:
        ScanLimitError: the pickle needs more work or memory than a checkpoint, or nests
            containers too deep for a recursive reader.
        pickle.UnpicklingError, EOFError, ValueError and friends when the bytes are not a pickle.

    Example:
        >>> import pickle
        >>> scan_pickle(pickle.dumps({"a": 1})).globals
        []
    """
    scan = scan if scan is not None else PickleScan()
    if isinstance(stream, bytes | bytearray):
        fresh = PickleScan(list(scan.globals), dict(scan.storages))
        try:
            unpickler = _ScanUnpickler(io.BytesIO(), fresh, max_storages, known_storages, state)
            fresh.top_level = unpickler.load_bytes(bytes(stream))
        except _Framed:  # protocol 4 and later: the stock loop and its unframer
            pass
        else:
            return _checked(fresh, scan)
    # bytes within the smallest limit need no counting: no read can claim more than is there
    small = isinstance(stream, bytes | bytearray) and len(stream) <= ScanLimits(0).bytes
    if isinstance(stream, bytes | bytearray):
        stream = io.BytesIO(stream)
    bounded: IO[bytes] | BoundedStream = stream
    if not small:
        bounded = BoundedStream(stream, lambda: ScanLimits(known_storages))
    unpickler = _ScanUnpickler(bounded, scan, max_storages, known_storages, state)
    if isinstance(bounded, BoundedStream):
        bounded._allowed = unpickler.limits
    scan.top_level = unpickler.load()
    return _checked(scan, scan)


def _checked(result: PickleScan, into: PickleScan) -> PickleScan:
    """``result`` copied into ``into`` (the caller's scan), once its structure is walkable."""
    problem = nesting_problem(result.top_level)
    if problem is not None:
        raise ScanLimitError(problem)
    if result is not into:
        into.globals[:] = result.globals
        into.storages.clear()
        into.storages.update(result.storages)
        into.top_level = result.top_level
    return into
