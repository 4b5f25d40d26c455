"""torch.distributed.checkpoint folders (what FSDP/DTensor training writes), read safely.

A DCP folder holds a pickled ``.metadata`` file and ``__R_N.distcp`` data files. The metadata is
read and checked by :mod:`paramscope.core.files.dcp_metadata` (nothing in it runs), the data
files it names by :mod:`paramscope.core.files.dcp_storage` (inside the folder, regular files,
each byte range within its file), again before every read. Tensors are read through torch's
``FileSystemReader`` (each record with ``torch.load(weights_only=True)``), one key at a time so
a tensor is only in memory when it is asked for, with metadata that holds only the keys asked
for. Byte entries (pickled Python objects, which torch would load with ``weights_only=False``)
are listed as "pickled object, not loaded" and never read. Any failure inside torch's loader,
including its ``CheckpointException`` (a ``BaseException``), becomes one :class:`SourceError`
line naming the folder and data file.

Every key is its own tensor: DCP stores each key separately, so no two keys are shown as tied.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from paramscope.core.errors import NotInFiles, SourceError, shown
from paramscope.core.files.dcp_metadata import METADATA_FILE, DcpEntry, DcpMetadata, read_metadata
from paramscope.core.files.dcp_storage import check_data_files
from paramscope.core.files.safety import check_fits_memory
from paramscope.core.tasks import TaskState, part

__all__ = [
    "NOT_LOADED",
    "DcpEntry",
    "is_dcp_folder",
    "list_entries",
    "load_tensors",
    "open_dcp",
    "read_dcp_checkpoint",
    "read_metadata",
]

NOT_LOADED = "pickled object, not loaded"


def is_dcp_folder(path: Path) -> bool:
    return path.is_dir() and (path / METADATA_FILE).is_file()


def list_entries(metadata: DcpMetadata) -> list[DcpEntry]:
    """The checked metadata's entries, tensors and byte (pickled object) entries alike."""
    return list(metadata.entries)


def _reader(folder: Path, metadata: Any) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:  # never plain pickle.load
            return metadata

    return SafeReader(str(folder))


def _planner() -> Any:
    from torch.distributed.checkpoint import DefaultLoadPlanner

    class TensorsOnly(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: Any) -> None:  # torch would torch.load(weights_only=False)
            raise SourceError(f"{read_item.dest_index.fqn}: {NOT_LOADED}")

    return TensorsOnly()


def _reason(exc: BaseException) -> str:
    """A short cause for a failed read; torch's advice about unsafe loading is never repeated."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        inner = next(iter(failures.values()))
        exc = inner[0] if isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException) else exc
    if isinstance(exc, SourceError):
        return str(exc)
    lines = str(exc).strip().splitlines()
    first = lines[0].split(". ")[0][:120] if lines else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if "weights" in text.lower() or "pickl" in text.lower():
        text = type(exc).__name__
    return f"damaged data or not this checkpoint's data ({shown(text)})"


def load_tensors(folder: Path, entries: list[DcpEntry], metadata: DcpMetadata | None = None) -> dict[str, torch.Tensor]:
    """Read the given tensor entries in full (every shard merged), checking memory first.

    Raises:
        SourceError: one line naming the folder (and data file) and the problem.
    """
    import torch.distributed.checkpoint as dcp

    folder = Path(folder)
    metadata = metadata if metadata is not None else read_metadata(folder)
    wanted = [e for e in entries if e.is_tensor]
    if not wanted:
        return {}
    keys = [e.key for e in wanted]
    infos = [info for key in keys for info in metadata.storage.get(key, {}).values()]
    check_data_files(folder, infos)  # again: files may have changed since the folder was opened
    check_fits_memory(folder, sum(e.nbytes for e in wanted))
    targets = {e.key: torch.zeros(e.shape or (), dtype=e.dtype) for e in wanted}
    files = ", ".join(sorted({info.relative_path for info in infos})) or "no data file"
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore")
            dcp.load(targets, storage_reader=_reader(folder, metadata.subset(keys)), planner=_planner(), no_dist=True)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # torch's CheckpointException is a BaseException
        what = shown(keys[0]) if len(keys) == 1 else f"{len(keys)} tensors"
        raise SourceError(f"{folder}: reading {what} from {shown(files)} failed: {_reason(exc)}") from None
    return targets


def _extras(entries: list[DcpEntry]) -> dict[str, object]:
    return {e.key: NOT_LOADED for e in entries if not e.is_tensor}


def read_dcp_checkpoint(folder: Path) -> Any:
    """Every tensor of the folder, read now (``diff``, ``--weights``); byte entries as extras."""
    from paramscope.core.files.statedict import Checkpoint

    metadata = read_metadata(folder)
    tensors = load_tensors(folder, metadata.entries, metadata)
    if not tensors:
        raise SourceError(f"{folder}: the checkpoint holds no tensors")
    return Checkpoint(tensors, extras=_extras(metadata.entries), distinct=True)


def open_dcp(folder: Path, state: TaskState | None = None) -> Any:
    """Open a DCP folder lazily: shape-only placeholders now, each tensor's values on demand.
    ``state``: progress and cancel (the metadata, then the module tree)."""
    from paramscope.core.files.opened import OpenedModel
    from paramscope.core.files.statedict import NO_FORWARD, Checkpoint, build_module

    metadata = read_metadata(folder, part(state, 0.0, 0.8))
    entries = metadata.entries
    tensors = {e.key: torch.empty(e.shape or (), dtype=e.dtype, device="meta") for e in entries if e.is_tensor}
    if not tensors:
        raise SourceError(f"{folder}: the checkpoint holds no tensors")
    by_key = {e.key: e for e in entries}
    extras = _extras(entries)
    # Placeholders are all meta tensors (no memory): they must not be taken for views of one storage.
    checkpoint = Checkpoint(tensors, extras=extras, distinct=True)
    model, notes = build_module(checkpoint, "distributed checkpoint", part(state, 0.8, 1.0))
    shards = len({info.relative_path for info in metadata.metadata.storage_data.values()})

    def load(name: str) -> torch.Tensor:
        if name not in by_key:
            raise NotInFiles(folder, name)
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
