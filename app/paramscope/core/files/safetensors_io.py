"""safetensors files: check the header against the file before loading; aliases kept as metadata.

A safetensors file is an 8-byte header length, a JSON header (name -> dtype, shape,
data_offsets) and the bytes. The header is checked against the file size before anything is
read, and tensors are read into memory, never mapped (:mod:`regions` says why). Shared tensors are written once; every other name goes into the metadata as
``{alias: stored_name}``, the form ``safetensors.torch.save_model`` writes, and is re-tied on load.
Files are written here, each tensor straight from its own memory into the file (no copy of the
whole file in memory).
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from paramscope.core.errors import ParamscopeError, listed
from paramscope.core.files.atomic import UnbufferedFile
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
from paramscope.core.tasks import TaskState, part, steps

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


def check_header(
    path: Path | str, raw: bytes, size: int, state: TaskState | None = None
) -> tuple[dict[str, dict], dict[str, str], int]:
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
    hold, go through the safetensors library after a memory check. ``state``: progress and
    cancel (between the header's checks, the tensors and their order).

    Raises:
        SourceError: damaged, lying header, changed while read, or more data than memory.
    """
    header, metadata, data_start = read_header(path, part(state, 0.0, 0.5))
    if state is not None:
        state.progress(0.5, "reading the tensors")
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
    if state is not None:
        state.progress(0.8, "ordering the names")
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


def _view_key(t: torch.Tensor) -> tuple[object, ...] | None:
    storage = t.untyped_storage()
    if storage.nbytes() == 0 or t.device.type == "meta":
        return None
    return (
        str(t.device),
        storage.data_ptr(),
        t.storage_offset(),
        tuple(t.shape),
        tuple(t.stride()),
        t.dtype,
    )


def dedupe(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split into tensors to store once and ``{alias: stored name}``, as ``save_model`` does.

    Names that are the very same view of one storage are aliases; the kept name is the first in
    sorted order (``save_model``'s choice). Tensors that merely overlap are stored as copies.
    """
    groups: dict[tuple[object, ...], list[str]] = {}
    keyless: list[str] = []
    for name, tensor in state_dict.items():
        key = _view_key(tensor)
        if key is None:
            keyless.append(name)
        else:
            groups.setdefault(key, []).append(name)
    stored: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for names in groups.values():
        keep = sorted(names)[0]
        stored[keep] = state_dict[keep]
        for other in names:
            if other != keep:
                aliases[other] = keep
    for name in keyless:
        stored[name] = state_dict[name]
    ordered = {name: stored[name] for name in state_dict if name in stored}
    return ordered, aliases


# dtypes written here, byte for byte; the rest (sub-byte floats, rarer float8) go through
# safetensors' own writer
# fmt: off
_WRITE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.uint16: "U16", torch.uint32: "U32",
    torch.uint64: "U64", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.complex64: "C64",
}
# fmt: on
# the rarer float8 and float4 types the format has, written by the safetensors library
_LIBRARY_WRITES = {getattr(torch, n) for n in ("float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2") if hasattr(torch, n)}


def write_safetensors(
    state_dict: dict[str, torch.Tensor],
    path: Path,
    metadata: dict[str, str] | None = None,
    open_file: Callable[[Path], UnbufferedFile] = UnbufferedFile,
) -> dict[str, str]:
    """Write ``state_dict`` to ``path`` (the caller's temporary file); returns the aliases.

    ``open_file`` opens the file the tensors are streamed into.
    """
    if METADATA_KEY in state_dict:
        raise ValueError(
            f"a tensor named {METADATA_KEY!r} cannot be stored in safetensors (the name is reserved)"
        )
    for name in state_dict:
        if not name.isascii() and not _is_utf8(name):  # e.g. a lone surrogate from a pickle
            raise ValueError(
                f"tensor name {name!r} is not valid Unicode text, and safetensors stores names "
                "as UTF-8: export to .pt instead"
            )
    odd = {n: str(t.dtype).removeprefix("torch.") for n, t in state_dict.items() if t.dtype not in _WRITE_NAMES and t.dtype not in _LIBRARY_WRITES}
    if odd:
        kinds = " or ".join(sorted(set(odd.values())))
        raise ValueError(f"the safetensors format has no {kinds} type ({listed(list(odd))}): export to .pt instead")
    stored, aliases = dedupe(state_dict)
    meta = {"format": "pt"}
    meta.update(metadata or {})
    meta.update(aliases)
    if sys.byteorder == "little" and all(t.dtype in _WRITE_NAMES for t in stored.values()):
        _write_streamed(stored, meta, path, open_file)
    else:
        _write_with_library(stored, meta, path)
    return aliases


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safetensors_layout(
    stored: dict[str, torch.Tensor], metadata: dict[str, str]
) -> tuple[bytes, list[torch.Tensor]]:
    """The file's first bytes (length and JSON header) and its tensors in file order.

    Tensors go largest item size first, then by name (as safetensors orders them), so each
    starts aligned to its item size; the header is padded with spaces to a multiple of 8.
    """
    order = sorted(stored, key=lambda name: (-stored[name].element_size(), name))
    header: dict[str, object] = {METADATA_KEY: metadata}
    offset = 0
    for name in order:
        tensor = stored[name]
        nbytes = tensor.numel() * tensor.element_size()
        entry = {"dtype": _WRITE_NAMES[tensor.dtype], "shape": list(tensor.shape)}
        header[name] = {**entry, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, [stored[name] for name in order]


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes in row-major order: its own memory when it is a contiguous CPU tensor."""
    flat = tensor.detach().to("cpu").resolve_conj().resolve_neg().contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def _write_streamed(
    stored: dict[str, torch.Tensor],
    metadata: dict[str, str],
    path: Path,
    open_file: Callable[[Path], UnbufferedFile],
) -> None:
    """Header, then each tensor written straight from its memory: no copy of the whole file."""
    head, tensors = safetensors_layout(stored, metadata)
    with open_file(path) as out:
        out.write(head)
        for tensor in tensors:
            if tensor.numel():
                out.write(tensor_bytes(tensor))


def _write_with_library(
    stored: dict[str, torch.Tensor], metadata: dict[str, str], path: Path
) -> None:
    from safetensors.torch import save_file

    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in stored.items()}
    # contiguous() of a non-contiguous view is a copy; two remaining views of one storage would
    # still be refused by save_file, so copy those that still share memory
    seen: set[int] = set()
    for k, v in contiguous.items():
        ptr = v.untyped_storage().data_ptr()
        if v.numel() and ptr in seen:
            contiguous[k] = v.clone()
        seen.add(ptr)
    save_file(contiguous, str(path), metadata=metadata)
