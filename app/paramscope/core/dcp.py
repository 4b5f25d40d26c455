"""torch.distributed.checkpoint folders (what FSDP/DTensor training writes), read safely.

A DCP folder holds a pickled ``.metadata`` file and ``__R_N.distcp`` data files. torch's own
``FileSystemReader.read_metadata`` uses plain ``pickle.load``, which runs any code the file
names. Here the metadata is read with an unpickler that accepts only the metadata classes,
dtypes and sizes it needs; tensors are read through torch's reader (``weights_only=True``), one
key at a time so a tensor is only in memory when it is asked for. Non-tensor entries (saved as
pickled bytes, loaded unsafely by torch) are listed but never loaded.
"""

from __future__ import annotations

import io
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from paramscope.core.errors import SourceError
from paramscope.core.files.safety import check_fits_memory

METADATA_FILE = ".metadata"

_ALLOWED_GLOBALS: dict[str, set[str]] = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "TensorProperties",
        "ChunkStorageMetadata",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.distributed.checkpoint.planner": {"LoadItemType", "WriteItemType"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size", "strided", "sparse_coo"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "slice"},
}


# Pure Python, as in pickle_scan: a damaged memo index must not allocate gigabytes.
class _MetadataUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if name in _ALLOWED_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def is_dcp_folder(path: Path) -> bool:
    return path.is_dir() and (path / METADATA_FILE).is_file()


def read_metadata(folder: Path) -> Any:
    """The folder's ``Metadata``, unpickled with only the classes DCP metadata needs."""
    meta_path = folder / METADATA_FILE
    try:
        data = meta_path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{meta_path}: cannot read: {exc.strerror or exc}") from exc
    try:
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise SourceError(f"{meta_path}: not plain checkpoint metadata ({exc}); nothing was run") from exc
    except Exception as exc:
        raise SourceError(f"{meta_path}: unreadable checkpoint metadata: {type(exc).__name__}: {exc}") from exc
    if not hasattr(metadata, "state_dict_metadata"):
        raise SourceError(f"{meta_path}: not torch.distributed.checkpoint metadata")
    try:  # the restricted unpickler builds objects from whatever the file says: check their shape
        list_entries(metadata)
    except (AttributeError, TypeError, ValueError) as exc:
        raise SourceError(f"{meta_path}: damaged checkpoint metadata ({exc})") from None
    return metadata


@dataclass(frozen=True)
class DcpEntry:
    key: str
    shape: tuple[int, ...] | None  # None for non-tensor (bytes) entries
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


def list_entries(metadata: Any) -> list[DcpEntry]:
    """The metadata's entries. Raises ValueError, TypeError or AttributeError where it is malformed."""
    entries = []
    for key, item in dict(metadata.state_dict_metadata).items():
        if not isinstance(key, str):
            raise TypeError(f"entry name {key!r} is not a string")
        if hasattr(item, "size") and hasattr(item, "properties"):
            shape = tuple(int(size) for size in item.size)
            dtype = item.properties.dtype
            if any(size < 0 for size in shape) or not isinstance(dtype, torch.dtype):
                raise ValueError(f"{key}: shape {shape} or dtype {dtype!r} is not a tensor's")
            entries.append(DcpEntry(key, shape, dtype, len(item.chunks)))
        else:
            entries.append(DcpEntry(key, None, None, 0))
    return entries


def _reader(folder: Path, metadata: Any) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:  # never plain pickle.load
            return metadata

    return SafeReader(str(folder))


def load_tensors(folder: Path, entries: list[DcpEntry], metadata: Any | None = None) -> dict[str, torch.Tensor]:
    """Read the given tensor entries in full (every shard merged), checking memory first."""
    import torch.distributed.checkpoint as dcp

    metadata = metadata if metadata is not None else read_metadata(folder)
    wanted = [e for e in entries if e.is_tensor]
    check_fits_memory(folder, sum(e.nbytes for e in wanted))
    targets = {e.key: torch.empty(e.shape or (), dtype=e.dtype) for e in wanted}
    if not targets:
        return {}
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(targets, storage_reader=_reader(folder, metadata), no_dist=True)
    except Exception as exc:
        raise SourceError(f"{folder}: reading tensors failed: {type(exc).__name__}: {exc}") from exc
    return targets


def open_dcp(folder: Path) -> Any:
    """Open a DCP folder lazily: shape-only placeholders now, each tensor's values on demand."""
    from paramscope.core.files.statedict import NO_FORWARD, Checkpoint, build_module
    from paramscope.core.sources import OpenedModel

    metadata = read_metadata(folder)
    entries = list_entries(metadata)
    tensors = {e.key: torch.empty(e.shape or (), dtype=e.dtype, device="meta") for e in entries if e.is_tensor}
    if not tensors:
        raise SourceError(f"{folder}: the checkpoint holds no tensors")
    by_key = {e.key: e for e in entries}
    extras: dict[str, object] = {e.key: "non-tensor entry (not loaded: torch unpickles it unsafely)" for e in entries if not e.is_tensor}
    model, notes = build_module(Checkpoint(tensors, extras=extras), "distributed checkpoint")
    shards = len(list(folder.glob("*.distcp")))

    def load(name: str) -> torch.Tensor:
        return load_tensors(folder, [by_key[name]], metadata)[name]

    return OpenedModel(
        model,
        str(folder),
        "distributed_checkpoint",
        forward_unavailable=NO_FORWARD,
        path=folder,
        notes=[f"torch.distributed.checkpoint folder, {shards} data file(s); tensors load when selected", *notes],
        extras=extras,
        loader=load,
    )
