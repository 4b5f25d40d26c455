"""Reading torch checkpoint files (zip and legacy format) without running code from them.

Before torch sees a file, its pickle is scanned inertly (:mod:`pickle_scan`) and the storage sizes
it declares are checked against the bytes present and the memory available. Then torch loads it
with ``weights_only=True``; what that refuses needs the user's trust, never a silent unsafe retry.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch

from paramscope.core.errors import Cancelled
from paramscope.core.files.pickle_limits import ScanLimitError, pickle_bytes_limit
from paramscope.core.files.pickle_scan import PickleScan, scan_pickle
from paramscope.core.files.regions import FileStamp
from paramscope.core.files.safety import (
    UntrustedFileError,
    bad_file,
    check_fits_memory,
    first_line,
    human_bytes,
)
from paramscope.core.files.sniff import Sniffed, sniff
from paramscope.core.files.torch_plain import build_plain
from paramscope.core.files.unknown import placeholders
from paramscope.core.tasks import TaskState, part

_PICKLE_RISK = "loading it unpickles Python objects, which can run arbitrary code on this computer"


def _check_zip(sniffed: Sniffed, state: TaskState | None = None) -> tuple[PickleScan, dict[str, zipfile.ZipInfo]]:
    """The scan of a zip checkpoint's pickle and its records, sizes checked; ``state``: the
    scan's progress and cancel."""
    path = sniffed.path
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            expanded = 0  # compressed entries must be unpacked into memory; stored ones are mapped
            for info in infos.values():
                if info.header_offset + info.compress_size > sniffed.size:
                    raise bad_file(path, f"is truncated: entry {info.filename!r} lies past the end of the file")
                if info.compress_type != zipfile.ZIP_STORED:
                    expanded += info.file_size
            check_fits_memory(path, expanded, "data once unpacked")
            pkl_name = f"{sniffed.prefix}/data.pkl" if sniffed.prefix else "data.pkl"
            pkl = infos.get(pkl_name)
            if pkl is None:
                raise bad_file(path, "is a zip archive without data.pkl at its top level")
            records = sum(1 for name in infos if name.startswith(f"{pkl_name[:-8]}data/"))
            limit = pickle_bytes_limit(records)
            if pkl.file_size > limit:
                raise bad_file(
                    path,
                    f"its data.pkl is {human_bytes(pkl.file_size)}, more than the "
                    f"{human_bytes(limit)} allowed for {records:,} storage(s); refusing to read it",
                )
            # read whole, so zipfile checks data.pkl's CRC-32 (a damaged pickle is refused here).
            # Storage records are not checked at open: that would read every byte of a file that
            # is otherwise mapped and paged in only as tensors are looked at.
            raw = archive.read(pkl)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError) as exc:
        # a damaged directory or entry surfaces as any of these from zipfile
        raise bad_file(path, f"is a damaged zip archive ({first_line(exc)})") from None
    scan = _scan(path, raw, max_storages=records, state=state)
    for key, decl in scan.storages.items():
        record = infos.get(f"{sniffed.prefix}/data/{key}" if sniffed.prefix else f"data/{key}")
        if record is None:
            raise bad_file(path, f"refers to storage {key!r} that is not in the archive")
        if decl.nbytes > record.file_size:
            raise bad_file(
                path,
                f"storage {key!r} declares {human_bytes(decl.nbytes)} but holds only "
                f"{human_bytes(record.file_size)}",
            )
        if record.compress_type != zipfile.ZIP_STORED:  # torch cannot map it: it is read whole
            check_fits_memory(path, decl.nbytes)
    return scan, infos


def _scan(
    path: Path,
    raw: bytes | io.BufferedReader,
    max_storages: int | None = None,
    known: int = 0,
    state: TaskState | None = None,
) -> PickleScan:
    try:
        return scan_pickle(raw, max_storages=max_storages, known_storages=known, state=state)
    except ScanLimitError as exc:  # more work or memory than a checkpoint needs
        raise bad_file(path, str(exc)) from None
    except Cancelled:  # the user stopped the open: nothing is wrong with the file
        raise
    except Exception as exc:  # any failure here means damaged bytes; nothing ran
        raise bad_file(path, f"is damaged: its pickle cannot be read ({type(exc).__name__})") from None


def _check_legacy(sniffed: Sniffed) -> PickleScan:
    """Torch's legacy format: magic, protocol, sys_info, the object, storage keys, raw storages."""
    path = sniffed.path
    with open(path, "rb") as handle:
        for _ in range(3):
            _scan(path, handle)  # magic number, protocol version, sys info: plain values
        scan = _scan(path, handle)
        keys_scan = _scan(path, handle, known=len(scan.storages))  # one key per storage
        data_start = handle.tell()
    keys = keys_scan.top_level if isinstance(keys_scan.top_level, list) else []
    # each storage follows as an 8-byte element count and its bytes
    needed = sum(8 + scan.storages[k].nbytes for k in keys if k in scan.storages)
    missing = [k for k in scan.storages if k not in keys]
    if missing:
        raise bad_file(path, f"declares storage {missing[0]!r} whose data is not in the file")
    if data_start + needed > sniffed.size:
        raise bad_file(
            path,
            f"declares {human_bytes(scan.declared_bytes)} of tensor data but holds only "
            f"{human_bytes(sniffed.size - data_start)}: truncated or forged",
        )
    check_fits_memory(path, scan.declared_bytes)
    return scan


def _untrusted(path: Path, scan: PickleScan) -> UntrustedFileError:
    names = scan.code_globals
    what = "it is not a plain state_dict"
    if names:
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        what = f"it contains pickled Python objects ({shown})"
    return UntrustedFileError(path, _PICKLE_RISK, what)


def _read(path: Path, trust: bool, stand_ins: list[tuple[type, str]] | None = None) -> Any:
    """``torch.load`` from memory reads, never a map: a mapped file truncated by a training job
    saving over it kills the process with SIGBUS (see :mod:`regions`)."""
    with open(path, "rb") as handle:
        stamp = FileStamp.of(path, handle)
        with torch.serialization.safe_globals(stand_ins or []):
            loaded = torch.load(handle, map_location="cpu", weights_only=not trust)
        stamp.check(handle)  # rewritten while being read: the values may be a mix
    return loaded


def _holds_plain_weights(loaded: Any) -> bool:
    """Whether the weights are plain tensors, not inside a stand-in (a whole pickled module)."""
    from paramscope.core.files.statedict import split_checkpoint

    try:
        checkpoint = split_checkpoint(loaded, "")
    except ValueError:
        return False
    return checkpoint.module is None and bool(checkpoint.tensors)


def load_torch_file(
    path: Path, trust: bool = False, sniffed: Sniffed | None = None, state: TaskState | None = None
) -> Any:
    """Load a ``torch.save`` file: ``weights_only=True`` unless ``trust``.

    Args:
        path: the file (zip or legacy torch format, any extension).
        trust: allow unpickling arbitrary objects (runs code from the file).
        sniffed: the result of :func:`sniff` if already known.
        state: progress and cancel of the pickle's scan and the reads (not of torch's own load).

    Objects of classes outside torch next to plain weights (a training script's config) come
    back as inert :class:`~paramscope.core.files.unknown.UnknownObject` stand-ins.

    Raises:
        UntrustedFileError: the file needs ``weights_only=False`` and ``trust`` is False.
        SourceError: damaged, truncated, forged or too large for memory.
    """
    sniffed = sniffed or sniff(path)
    records: dict[str, zipfile.ZipInfo] = {}
    if sniffed.kind == "torch_zip":
        scan, records = _check_zip(sniffed, part(state, 0.0, 0.5))
    elif sniffed.kind == "torch_legacy":
        scan = _check_legacy(sniffed)
    elif sniffed.kind == "pickle":
        if not trust:
            raise UntrustedFileError(path, _PICKLE_RISK, "it is a plain Python pickle, not a torch state_dict")
        scan = PickleScan()
    else:
        raise bad_file(path, f"is a {sniffed.kind} file, not a torch checkpoint")
    try:
        if sniffed.kind == "pickle":
            with open(path, "rb") as handle:
                return pickle.load(handle)  # noqa: S301  (only with trust, checked above)
        if sniffed.kind == "torch_zip":
            check_fits_memory(path, scan.declared_bytes)
            plain = build_plain(path, scan, records, sniffed.prefix, part(state, 0.5, 1.0))
            if plain is not None:
                return plain
        try:
            return _read(path, trust)
        except pickle.UnpicklingError as exc:
            if trust or "weights only" not in str(exc).lower() or not scan.code_globals:
                raise
        # The user's own classes beside the weights (a Lightning checkpoint's hyper-parameters):
        # each becomes an inert stand-in; the weights must still be plain tensors.
        loaded = _read(path, False, placeholders(scan.code_globals))
        if not _holds_plain_weights(loaded):
            raise _untrusted(path, scan)
        return loaded
    except pickle.UnpicklingError as exc:
        if not trust and "weights only" in str(exc).lower():
            raise _untrusted(path, scan) from None
        raise bad_file(path, f"is damaged: {first_line(exc)}") from None
    except (ImportError, AttributeError) as exc:  # a pickled module whose class is not importable here
        raise bad_file(
            path, f"needs code that cannot be imported here ({first_line(exc)}); run paramscope where that code is importable"
        ) from None
    except (RuntimeError, EOFError, ValueError, struct.error, OSError, KeyError, TypeError) as exc:
        raise bad_file(path, f"cannot be loaded: {first_line(exc)}") from None
