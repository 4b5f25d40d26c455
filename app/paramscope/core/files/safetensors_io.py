"""Reading safetensors files: the header checked against the file before loading; aliases re-tied.

A safetensors file is an 8-byte header length, a JSON header (name -> dtype, shape,
data_offsets) and the bytes. The header is checked against the file size before anything is
read, and tensors are read into memory, never mapped (:mod:`regions` says why). Shared tensors
are written once (:mod:`safetensors_write`); every other name goes into the metadata as
``{alias: stored_name}``, the form ``safetensors.torch.save_model`` writes, and is re-tied here.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import torch

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.regions import (
    FileStamp,
    Region,
    RegionLoader,
    opens_lazily,
    read_regions,
)
from paramscope.core.files.safety import (
    bad_file,
    check_fits_memory,
    check_readable_file,
    first_line,
    human_bytes,
)
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.tasks import TaskState, advance, part, steps

# fmt: off
_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8, "C128": 16,
    "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
}
# fmt: on
_SUB_BYTE_BITS = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}  # packed: bits per element
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit
METADATA_KEY = "__metadata__"


class _DuplicateKey(Exception):
    """A JSON object names ``key`` twice (json.loads would silently keep the last)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _parse_header(path: Path, raw: bytes) -> dict[str, Any]:
    """The header as JSON, refusing what the format forbids: duplicate names, lone surrogates."""
    try:
        text = raw.decode("utf-8")
        header = json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as dup:
        raise bad_file(
            path,
            f"safetensors header names {dup.key!r} twice (names must be unique; readers would "
            "disagree on which one counts)",
        ) from None
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, nesting too deep, absurd numbers
        raise bad_file(
            path, "safetensors header is not valid JSON: damaged or not a safetensors file"
        ) from None
    if not isinstance(header, dict):
        raise bad_file(path, "safetensors header is not a JSON object")
    if "\\ud" in text.lower():  # an escaped surrogate: rare, so only then is every name checked
        for name in _strings(header):
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise bad_file(
                    path,
                    f"safetensors header holds {name!r}, which is not valid Unicode (a lone "
                    "surrogate): the format's names and metadata are UTF-8 text",
                ) from None
    return header


def _strings(value: object) -> list[str]:
    """Every key and string in the parsed header (it nests two levels at most)."""
    found: list[str] = []
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            found.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return found


def _check_metadata(path: Path, metadata: object) -> dict[str, str]:
    if metadata is None:  # the library reads a null __metadata__ as none
        return {}
    if not isinstance(metadata, dict):
        raise bad_file(
            path,
            f"safetensors {METADATA_KEY} must be a map of strings to strings, not "
            f"{type(metadata).__name__}",
        )
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise bad_file(
                path,
                f"safetensors {METADATA_KEY} must map strings to strings: {key!r} is "
                f"{type(value).__name__} {_shown_value(value)}",
            )
    return metadata


def _shown_value(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_header(path: Path, state: TaskState | None = None) -> tuple[dict[str, dict], dict[str, str], int]:
    """Validated header entries, metadata, and the data start offset.

    What ``safetensors`` itself refuses is refused here too, saying which rule: each tensor a
    known dtype, an integer shape and two integer offsets spanning exactly its bytes, the
    tensors filling the data area from its start to the end of the file with no gap or overlap
    (the library's "fully indexed" rule), ``__metadata__`` a map of strings to strings. Stricter
    than the library: a name given twice is refused (it keeps the last silently).

    Raises:
        SourceError: when the header is unreadable or claims bytes the file does not hold.
    """
    size = check_readable_file(path)
    if size < 8:
        raise bad_file(path, f"is too short for a safetensors file ({size} bytes)")
    with open(path, "rb") as handle:
        header_len = header_length(path, handle.read(8), size)
        raw = handle.read(header_len)
    if len(raw) != header_len:
        raise bad_file(path, "ends inside its safetensors header (truncated while read?)")
    return check_header(path, raw, size, state)


def header_length(path: Path | str, first8: bytes, size: int) -> int:
    """The JSON header's length from a file's first 8 bytes, checked against its ``size``.

    ``path`` only names the file in messages: a remote reader checks the bytes it fetched.
    """
    if size < 8 or len(first8) < 8:
        raise bad_file(path, f"is too short for a safetensors file ({size} bytes)")
    (header_len,) = struct.unpack("<Q", first8[:8])
    if header_len > MAX_HEADER or 8 + header_len > size:
        raise bad_file(
            path,
            f"safetensors header claims {human_bytes(header_len)} but the file has "
            f"{human_bytes(size)}: truncated or not a safetensors file",
        )
    return header_len


def check_header(path: Path | str, raw: bytes, size: int, state: TaskState | None = None) -> tuple[dict[str, dict], dict[str, str], int]:
    """:func:`read_header`'s checks on header bytes ``raw`` of a file of ``size`` bytes, from any
    reader (a local file, ranges fetched over the network); ``state``: progress and cancel."""
    header = _parse_header(path, raw)
    metadata = _check_metadata(path, header.pop(METADATA_KEY, None))
    data_len = size - 8 - len(raw)
    spans: list[tuple[int, int, str]] = []
    for name, entry in steps(header.items(), len(header), state, "checking the header"):
        spans.append(_check_entry(path, name, entry, data_len))
    _check_layout(path, sorted(spans), data_len)
    return header, dict(metadata), 8 + len(raw)


def _check_layout(path: Path, spans: list[tuple[int, int, str]], data_len: int) -> None:
    """The tensors' bytes must follow each other from offset 0 to the end of the file."""
    end = 0
    for begin, stop, name in spans:
        if begin < end:
            raise bad_file(
                path, f"safetensors header: tensor {name!r} overlaps another tensor's bytes"
            )
        if begin > end:
            raise bad_file(
                path,
                f"safetensors header: {begin - end} byte(s) before tensor {name!r} belong to no "
                "tensor (the format requires the tensors to fill the data with no gaps)",
            )
        end = stop
    if end != data_len:
        raise bad_file(
            path,
            f"safetensors file has {data_len - end} byte(s) after its last tensor (the format "
            "requires the tensors to fill the data to the end of the file)",
        )


def _is_int(value: object) -> bool:
    return type(value) is int  # JSON true/false are ints to Python; the format wants numbers


def _check_entry(path: Path, name: str, entry: object, data_len: int) -> tuple[int, int, str]:
    if not isinstance(entry, dict):
        raise bad_file(path, f"safetensors header: entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _ITEMSIZE:
        raise bad_file(path, f"safetensors header: tensor {name!r} has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
        raise bad_file(
            path,
            f"safetensors header: tensor {name!r} has an invalid shape {shape!r} "
            "(it must be a list of non-negative integers)",
        )
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_is_int(o) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise bad_file(
            path,
            f"safetensors header: tensor {name!r} has invalid data_offsets {offsets!r} "
            "(they must be two integers, begin <= end)",
        )
    begin, stop = offsets
    bits = math.prod(shape) * _SUB_BYTE_BITS.get(dtype, 8 * _ITEMSIZE[dtype])
    if bits % 8:
        raise bad_file(
            path, f"safetensors header: tensor {name!r} {dtype}{shape} is not a whole number of bytes"
        )
    nbytes = bits // 8
    if stop - begin != nbytes:
        raise bad_file(
            path,
            f"safetensors header: tensor {name!r} {dtype}{shape} needs {nbytes} bytes but its "
            f"offsets span {stop - begin}",
        )
    if stop > data_len:
        raise bad_file(
            path,
            f"safetensors header: tensor {name!r} lies past the end of the file "
            f"(offset {stop} > {data_len} data bytes): truncated or forged",
        )
    return begin, stop, name


def natural_key(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in name.split(".")]


def aliases_from_metadata(metadata: dict[str, str], stored: set[str]) -> dict[str, str]:
    """``{alias: stored}`` pairs as ``save_model`` writes them; other metadata is left alone."""
    return {k: v for k, v in metadata.items() if v in stored and k not in stored}


# fmt: off
_TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "C64": torch.complex64,
    "C128": torch.complex128,
}
# fmt: on


def _regions(header: dict[str, dict], data_start: int) -> dict[str, Region]:
    return {
        name: Region(data_start + e["data_offsets"][0], tuple(e["shape"]), _TORCH_DTYPES[e["dtype"]])
        for name, e in header.items()
    }


def read_safetensors(path: Path, lazy: bool | None = False, state: TaskState | None = None) -> Checkpoint:
    """Open a safetensors file after checking its header; aliases become ties.

    Tensors are read into memory (never mapped: see :mod:`regions`). With ``lazy`` (None: when
    the file is larger than :data:`LAZY_BYTES`) they are shape-only placeholders and the
    checkpoint's ``loader`` reads one when asked. Sub-byte float formats, which torch cannot
    hold, go through the safetensors library after a memory check. ``state``: progress, cancel.

    Raises:
        SourceError: damaged, lying header, changed while read, or more data than memory.
    """
    header, metadata, data_start = read_header(path, part(state, 0.0, 0.5))
    advance(state, 0.5, "reading the tensors")
    total = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in header.values())
    loader = None
    try:
        if all(e["dtype"] in _TORCH_DTYPES for e in header.values()):
            with open(path, "rb") as handle:
                stamp = FileStamp.of(path, handle)
            regions = _regions(header, data_start)
            if opens_lazily(lazy, stamp.size):
                tensors = {n: torch.empty(r.shape, dtype=r.dtype, device="meta") for n, r in regions.items()}
                loader = RegionLoader(path, stamp, regions)
            else:
                check_fits_memory(path, total)
                tensors = read_regions(path, stamp, regions.items(), part(state, 0.5, 0.8))
        else:
            check_fits_memory(path, total)
            from safetensors.torch import load_file

            tensors = load_file(str(path))
    except OSError as exc:
        raise bad_file(path, f"cannot be read: {exc.strerror or exc}") from None
    except ParamscopeError:  # ours already name the file (or say the user stopped)
        raise
    except Exception as exc:  # the library's errors are not one-line friendly
        raise bad_file(path, f"cannot be read as safetensors: {first_line(exc)}") from None
    advance(state, 0.8, "ordering the names")
    # safetensors keeps no order: sort names naturally so layers.2 comes before layers.10
    tensors = {k: tensors[k] for k in sorted(tensors, key=natural_key)}
    aliases = aliases_from_metadata(metadata, set(tensors))
    other = {k: v for k, v in metadata.items() if k not in aliases}
    notes = [f"{len(aliases)} tied name(s) restored from the file's metadata"] if aliases else []
    if loader is not None:
        notes.append(f"{human_bytes(total)} of tensors: each is read when it is looked at")
    return Checkpoint(
        dict(tensors), aliases=aliases, extras=dict(other), notes=notes, distinct=True, loader=loader
    )
