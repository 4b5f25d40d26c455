"""A DCP folder's ``.metadata``, read without running anything and checked field by field.

torch's ``FileSystemReader.read_metadata`` is a plain ``pickle.load``: whatever the file names
runs. Here the pickle is replayed by a restricted unpickler: globals come from an exact allow-list,
only the metadata dataclasses can be made (``NEWOBJ``, no arguments), only a few value types can be
called (``torch.Size``, enums, paths), and object state (``BUILD``) can only set the fields the
dataclass declares, once, on an instance this unpickle made. A class's own attributes are never
reachable (a file cannot replace ``PurePosixPath.__fspath__``).

What the unpickler yields is then checked by exact type and rebuilt into fresh torch objects, so
torch's loader sees only checked fields: tensor entries with a real dtype and chunks that lie
inside the tensor and cover it, each with a storage entry; byte entries (pickled Python objects,
which torch loads with ``weights_only=False``) kept as an empty marker and never read; storage
entries of plain names and counts, whose files :mod:`~paramscope.core.files.dcp_storage` checks
(inside the folder, regular, long enough) before torch opens any.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pathlib
import pickle
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from paramscope.core.errors import ParamscopeError, SourceError, shown
from paramscope.core.files.dcp_storage import check_data_files
from paramscope.core.tasks import STEP_STRIDE, TaskState

METADATA_FILE = ".metadata"

# Exact (module, name) pairs: a name next to an allowed one in the same module is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("torch.distributed.checkpoint.metadata", "Metadata"),
    ("torch.distributed.checkpoint.metadata", "TensorStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "BytesStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "TensorProperties"),
    ("torch.distributed.checkpoint.metadata", "ChunkStorageMetadata"),
    ("torch.distributed.checkpoint.metadata", "MetadataIndex"),
    ("torch.distributed.checkpoint.metadata", "StorageMeta"),
    ("torch.distributed.checkpoint.metadata", "_MEM_FORMAT_ENCODING"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch.distributed.checkpoint.planner", "LoadItemType"),
    ("torch.distributed.checkpoint.planner", "WriteItemType"),
    ("torch.serialization", "_get_layout"),
    ("torch", "Size"),
    ("torch", "strided"),
    ("torch", "sparse_coo"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("pathlib", "Path"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
})


@cache
def _torch_dtypes() -> dict[str, torch.dtype]:
    """``torch.float32`` etc. by name, from torch's namespace (no lazy attribute is triggered)."""
    return {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}


@cache
def _classes() -> dict[str, type]:
    """The DCP classes, imported only when a DCP folder is read."""
    from torch.distributed.checkpoint import filesystem, metadata, planner

    return {
        "Metadata": metadata.Metadata,
        "TensorStorageMetadata": metadata.TensorStorageMetadata,
        "BytesStorageMetadata": metadata.BytesStorageMetadata,
        "TensorProperties": metadata.TensorProperties,
        "ChunkStorageMetadata": metadata.ChunkStorageMetadata,
        "MetadataIndex": metadata.MetadataIndex,
        "StorageMeta": metadata.StorageMeta,
        "_StorageInfo": filesystem._StorageInfo,
        "_MEM_FORMAT_ENCODING": metadata._MEM_FORMAT_ENCODING,
        "LoadItemType": planner.LoadItemType,
        "WriteItemType": planner.WriteItemType,
    }


_DATACLASS_NAMES = (
    "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "TensorProperties",
    "ChunkStorageMetadata", "MetadataIndex", "StorageMeta", "_StorageInfo",
)


def _callables() -> tuple[Any, ...]:
    """What ``REDUCE`` may call: value types whose constructors only build a value."""
    from torch.serialization import _get_layout

    classes = _classes()
    return (
        torch.Size, _get_layout, classes["_MEM_FORMAT_ENCODING"], classes["LoadItemType"],
        classes["WriteItemType"], pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath,
        pathlib.PurePosixPath, pathlib.PureWindowsPath, collections.OrderedDict, set, frozenset, slice,
    )


# Arguments a REDUCE may pass: plain values (and containers of the objects made so far).
_ARGUMENT_TYPES = (str, int, bool, float, type(None), tuple, list)


def _refuse(*_: Any) -> None:
    raise pickle.UnpicklingError("opcode not used by checkpoint metadata")


# Pure Python, as in pickle_scan: a damaged memo index must not allocate gigabytes.
class _MetadataUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, data: bytes, state: TaskState | None = None) -> None:
        self._stream = io.BytesIO(data)
        super().__init__(self._stream)
        self._state, self._size, self._built = state, len(data), 0  # progress, every few thousand entries
        self._fresh: dict[int, object] = {}  # instances made here and not yet given state
        self._dataclasses = tuple(_classes()[n] for n in _DATACLASS_NAMES)
        self._callables = _callables()

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _torch_dtypes():
            return _torch_dtypes()[name]
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {shown(module)}.{shown(name)}")
        if module.startswith("torch.distributed.checkpoint."):
            return _classes()[name]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not used by checkpoint metadata")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if (
            not any(func is allowed for allowed in self._callables)
            or type(args) is not tuple
            or not all(type(arg) in _ARGUMENT_TYPES for arg in args)
        ):
            raise pickle.UnpicklingError(f"refused to call {_name(func)}")
        self.stack[-1] = func(*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if not any(cls is allowed for allowed in self._dataclasses) or args != ():
            raise pickle.UnpicklingError(f"refused to make {_name(cls)}")
        obj = cls.__new__(cls)
        self._fresh[id(obj)] = obj
        self.append(obj)

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if self._fresh.pop(id(inst), None) is not inst:
            raise pickle.UnpicklingError(f"state for {_name(type(inst))} not made by this file, or given twice")
        _set_fields(inst, state)
        self._built += 1
        if self._state is not None and not self._built % STEP_STRIDE:  # (a stop raises here)
            self._state.progress(self._stream.tell() / self._size, "reading the checkpoint's metadata")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.BUILD[0]] = load_build
    for _opcode in (pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST):
        dispatch[_opcode[0]] = _refuse
    del _opcode


def _name(obj: object) -> str:
    return shown(getattr(obj, "__qualname__", None) or type(obj).__name__)


def _set_fields(inst: object, state: object) -> None:
    """Give a fresh dataclass instance its fields; nothing a class does not declare."""
    cls = type(inst)
    if cls is _classes()["TensorProperties"] and type(state) is tuple:
        _set_properties(inst, state)
        return
    if type(state) is tuple and len(state) == 2 and state[0] is None:
        state = state[1]  # (no __dict__ state, slot state)
    if type(state) is not dict:
        raise pickle.UnpicklingError(f"state of {cls.__name__} is a {type(state).__name__}, not its fields")
    declared = {f.name for f in dataclasses.fields(cls)}
    for key, value in state.items():
        if type(key) is not str or key not in declared:
            raise pickle.UnpicklingError(f"{cls.__name__} has no field {shown(str(key))}")
        object.__setattr__(inst, key, value)


def _set_properties(inst: object, state: tuple) -> None:
    """TensorProperties pickles as (dtype, layout, requires_grad, memory format code, pin_memory)."""
    encoding = _classes()["_MEM_FORMAT_ENCODING"]
    formats = {0: torch.contiguous_format, 1: torch.channels_last, 2: torch.preserve_format}
    kinds = (torch.dtype, torch.layout, bool, encoding, bool)
    if len(state) != 5 or not all(type(v) is k for v, k in zip(state, kinds, strict=True)) or state[3].value not in formats:
        raise pickle.UnpicklingError("TensorProperties state is not (dtype, layout, flag, format, flag)")
    values = dict(zip(("dtype", "layout", "requires_grad", "memory_format", "pin_memory"), state, strict=True))
    values["memory_format"] = formats[state[3].value]
    for key, value in values.items():
        object.__setattr__(inst, key, value)


# ---- checking what was unpickled -------------------------------------------------------------


class _Bad(ValueError):
    """A field of the metadata is not what torch writes."""


def _field(obj: object, cls: type, name: str) -> Any:
    """``obj.name`` from its own fields, or the dataclass default; never a class attribute."""
    if type(obj) is not cls:
        raise _Bad(f"{cls.__name__} expected, found {_name(type(obj))}")
    own = vars(obj)
    if name in own:
        return own[name]
    spec = next(f for f in dataclasses.fields(cls) if f.name == name)
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    raise _Bad(f"{cls.__name__} lacks {name}")


def _int(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _Bad(f"{what} is {shown(repr(value)[:40])}, not a count")
    return value


def _size(value: object, what: str) -> torch.Size:
    if type(value) is not torch.Size:
        raise _Bad(f"{what} is a {_name(type(value))}, not a torch.Size")
    for item in value:
        _int(item, what)
    return torch.Size(value)


def _tensor_entry(key: str, item: object) -> Any:
    """A fresh TensorStorageMetadata with a real dtype and chunks that lie inside the tensor."""
    c = _classes()
    kind = c["TensorStorageMetadata"]
    props = _field(item, kind, "properties")
    dtype = _field(props, c["TensorProperties"], "dtype")
    if type(dtype) is not torch.dtype:
        raise _Bad(f"{key}: dtype is a {_name(type(dtype))}, not a torch.dtype")
    if _field(props, c["TensorProperties"], "layout") is not torch.strided:
        raise _Bad(f"{key}: only dense (strided) tensors are read")
    size = _size(_field(item, kind, "size"), f"{key}: size")
    chunks = _field(item, kind, "chunks")
    if type(chunks) is not list:
        raise _Bad(f"{key}: chunks is a {_name(type(chunks))}, not a list")
    clean = [_chunk(key, chunk, size) for chunk in chunks]
    if sum(chunk.sizes.numel() for chunk in clean) != size.numel():
        raise _Bad(f"{key}: its chunks do not cover its {list(size)} elements")
    return kind(properties=c["TensorProperties"](dtype=dtype), size=size, chunks=clean)


def _chunk(key: str, chunk: object, size: torch.Size) -> Any:
    kind = _classes()["ChunkStorageMetadata"]
    offsets = _size(_field(chunk, kind, "offsets"), f"{key}: chunk offsets")
    sizes = _size(_field(chunk, kind, "sizes"), f"{key}: chunk sizes")
    if len(offsets) != len(size) or len(sizes) != len(size):
        raise _Bad(f"{key}: a chunk has {len(sizes)} dimensions, the tensor {len(size)}")
    if any(o + s > d for o, s, d in zip(offsets, sizes, size, strict=True)):
        raise _Bad(f"{key}: a chunk at {list(offsets)} of {list(sizes)} lies outside {list(size)}")
    return kind(offsets=offsets, sizes=sizes)


def _storage(index: object, info: object) -> tuple[Any, Any]:
    c = _classes()
    fqn = _field(index, c["MetadataIndex"], "fqn")
    if type(fqn) is not str:
        raise _Bad("a storage entry's name is not a string")
    offset = _field(index, c["MetadataIndex"], "offset")
    hint = _field(index, c["MetadataIndex"], "index")
    offset = None if offset is None else _size(offset, f"{fqn}: storage offset")
    hint = None if hint is None else _int(hint, f"{fqn}: chunk index")
    kind = c["_StorageInfo"]
    path = _field(info, kind, "relative_path")
    if type(path) is not str:
        raise _Bad(f"{fqn}: its data file name is not a string")
    transforms = _field(info, kind, "transform_descriptors")
    if transforms is not None and (type(transforms) not in (list, tuple) or any(type(t) is not str for t in transforms)):
        raise _Bad(f"{fqn}: transform descriptors are not strings")
    clean = kind(
        relative_path=path,
        offset=_int(_field(info, kind, "offset"), f"{fqn}: data offset"),
        length=_int(_field(info, kind, "length"), f"{fqn}: data length"),
        transform_descriptors=None if transforms is None else list(transforms),
    )
    return c["MetadataIndex"](fqn, offset, hint), clean


def _clean_metadata(raw: object) -> Any:
    """Fresh torch ``Metadata`` built from checked fields of what the file held."""
    c = _classes()
    entries = _field(raw, c["Metadata"], "state_dict_metadata")
    storage = _field(raw, c["Metadata"], "storage_data")
    version = _field(raw, c["Metadata"], "version")
    if type(entries) is not dict or type(storage) is not dict:
        raise _Bad("its entry or storage table is not a dict")
    clean: dict[str, Any] = {}
    for key, item in entries.items():
        if type(key) is not str:
            raise _Bad(f"entry name {shown(repr(key)[:40])} is not a string")
        if type(item) is c["BytesStorageMetadata"] and not vars(item):
            clean[key] = c["BytesStorageMetadata"]()
        elif type(item) is c["TensorStorageMetadata"]:
            clean[key] = _tensor_entry(key, item)
        else:
            raise _Bad(f"{shown(key)}: entry is a {_name(type(item))}, not tensor or bytes metadata")
    data = dict(_storage(index, info) for index, info in storage.items())
    _check_chunks_stored(clean, data)
    return c["Metadata"](
        state_dict_metadata=clean,
        storage_data=data,
        storage_meta=c["StorageMeta"](),
        version=version if type(version) is str else None,
    )


def _check_chunks_stored(entries: dict[str, Any], storage: dict[Any, Any]) -> None:
    stored = {(index.fqn, tuple(index.offset or ())) for index in storage}
    for key, item in entries.items():
        for chunk in getattr(item, "chunks", ()):
            if (key, tuple(chunk.offsets)) not in stored:
                raise _Bad(f"{shown(key)}: a chunk at {list(chunk.offsets)} has no data file entry")


# ---- the folder's metadata ----------------------------------------------------------------------


@dataclass(frozen=True)
class DcpEntry:
    key: str
    shape: tuple[int, ...] | None  # None for byte (pickled object) entries
    dtype: torch.dtype | None
    chunks: int

    @property
    def is_tensor(self) -> bool:
        return self.shape is not None

    @property
    def nbytes(self) -> int:
        if self.shape is None or self.dtype is None:
            return 0
        numel = 1
        for size in self.shape:
            numel *= size
        return numel * self.dtype.itemsize


@dataclass
class DcpMetadata:
    """Checked metadata: torch's ``Metadata`` (fresh objects), the entries, and storage by key."""

    folder: Path
    metadata: Any
    entries: list[DcpEntry]
    storage: dict[str, dict[Any, Any]]  # entry key -> {MetadataIndex: _StorageInfo}

    def subset(self, keys: list[str]) -> Any:
        """Metadata holding only ``keys``: torch's loader then cannot reach any other entry."""
        c = _classes()
        storage = {index: info for key in keys for index, info in self.storage.get(key, {}).items()}
        entries = {key: self.metadata.state_dict_metadata[key] for key in keys}
        return c["Metadata"](
            state_dict_metadata=entries,
            storage_data=storage,
            storage_meta=c["StorageMeta"](),
            version=self.metadata.version,
        )


def _entries(metadata: Any) -> list[DcpEntry]:
    out = []
    for key, item in metadata.state_dict_metadata.items():
        if type(item) is _classes()["TensorStorageMetadata"]:
            out.append(DcpEntry(key, tuple(item.size), item.properties.dtype, len(item.chunks)))
        else:
            out.append(DcpEntry(key, None, None, 0))
    return out


def read_metadata(folder: Path, state: TaskState | None = None) -> DcpMetadata:
    """The folder's metadata, unpickled with nothing run and every field checked; ``state``:
    progress and cancel (the metadata of 100,000 tensors takes seconds in pure Python).

    Raises:
        SourceError: one line naming ``.metadata`` (or a data file) and the problem.
    """
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    try:
        data = meta_path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{meta_path}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = _MetadataUnpickler(data, state).load()
    except ParamscopeError:  # (the user stopped the open)
        raise
    except pickle.UnpicklingError as exc:
        raise SourceError(f"{meta_path}: not plain checkpoint metadata ({exc}); nothing was run") from None
    except RecursionError:
        raise SourceError(f"{meta_path}: checkpoint metadata nested too deeply") from None
    except Exception as exc:
        raise SourceError(f"{meta_path}: unreadable checkpoint metadata: {type(exc).__name__}: {exc}") from None
    if type(raw) is not _classes()["Metadata"]:
        raise SourceError(f"{meta_path}: not torch.distributed.checkpoint metadata (holds a {_name(type(raw))})")
    try:
        metadata = _clean_metadata(raw)
    except _Bad as exc:
        raise SourceError(f"{meta_path}: damaged checkpoint metadata ({exc})") from None
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise SourceError(f"{meta_path}: damaged checkpoint metadata ({type(exc).__name__}: {exc})") from None
    storage: dict[str, dict[Any, Any]] = {}
    for index, info in metadata.storage_data.items():
        storage.setdefault(index.fqn, {})[index] = info
    check_data_files(folder, list(metadata.storage_data.values()))
    return DcpMetadata(folder, metadata, _entries(metadata), storage)
