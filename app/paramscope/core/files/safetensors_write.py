"""Writing safetensors files: the tensors streamed from their own memory after a header in the
library's order, ties written as the library writes them (``save_model``'s aliases in the
metadata); the format's rarer types through the library itself.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from paramscope.core.errors import listed
from paramscope.core.files.atomic import UnbufferedFile
from paramscope.core.files.safetensors_io import METADATA_KEY


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
