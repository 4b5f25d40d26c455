"""Decide a file's format from its first bytes, never from its extension."""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from paramscope.core.files.safety import GIT_LFS_PREFIX, bad_file, check_readable_file

# the first pickle of torch's legacy (non-zip) format is this number, as LONG1
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_MAGIC_BYTES = LEGACY_MAGIC.to_bytes(10, "little")


@dataclass(frozen=True)
class Sniffed:
    """What a file is: ``kind`` and, for zip archives, the archive's top folder."""

    path: Path
    kind: str  # torch_zip, torchscript, pt2, torch_legacy, pickle, safetensors, index, tar, npz, npy
    size: int
    prefix: str = ""


def sniff(path: Path) -> Sniffed:
    """Look at ``path``'s content and say which format it is.

    Raises:
        SourceError: for empty, unreadable, git-lfs pointers, and unknown content, naming the file.
    """
    size = check_readable_file(path)
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(GIT_LFS_PREFIX):
        raise bad_file(path, "is a git-lfs pointer file, not the weights themselves (run `git lfs pull`)")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(path, size)
    if head[:1] == b"\x80" and len(head) >= 2 and 2 <= head[1] <= 5:
        # torch's legacy format: a pickled magic number first
        if _LEGACY_MAGIC_BYTES in head[:16]:
            return Sniffed(path, "torch_legacy", size)
        return Sniffed(path, "pickle", size)
    if size >= 8 and _looks_like_safetensors(head, size):
        return Sniffed(path, "safetensors", size)
    if head.lstrip()[:1] == b"{" and _looks_like_index(path, size):
        return Sniffed(path, "index", size)
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Sniffed(path, "tar", size)
    if head.startswith(b"\x93NUMPY"):
        return Sniffed(path, "npy", size)
    foreign = _foreign_format(path, head)
    if foreign is not None:
        raise bad_file(path, f"is {foreign}: paramscope reads PyTorch checkpoints, safetensors and NumPy .npz")
    if path.suffix == ".safetensors" and size >= 8:
        # the extension promises safetensors: say what is wrong with the header
        return Sniffed(path, "safetensors", size)
    raise bad_file(
        path,
        "is not a model file paramscope knows (not a torch checkpoint, safetensors file, "
        "sharded *.index.json, TorchScript or .pt2 archive)",
    )


# formats of other frameworks, by their first bytes (ONNX and msgpack have none: by their names)
_FOREIGN_MAGIC = {b"GGUF": "a GGUF file (llama.cpp)", b"\x89HDF\r\n\x1a\n": "an HDF5 file (Keras or TensorFlow weights)"}
_FOREIGN_SUFFIX = {".onnx": "an ONNX model", ".msgpack": "a msgpack file (Flax weights)", ".tflite": "a TensorFlow Lite model"}


def _foreign_format(path: Path, head: bytes) -> str | None:
    """What another framework's file is, said instead of "not a model file"."""
    for magic, what in _FOREIGN_MAGIC.items():
        if head.startswith(magic):
            return what
    return _FOREIGN_SUFFIX.get(path.suffix.lower())


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    (header_len,) = struct.unpack("<Q", head[:8])
    return header_len >= 2 and head[8:9] == b"{"


def _looks_like_index(path: Path, size: int) -> bool:
    if size > 64 * 1024 * 1024:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError, OSError):  # not JSON, or JSON nested/numbered absurdly
        return False
    return isinstance(data, dict) and "weight_map" in data


def _sniff_zip(path: Path, size: int) -> Sniffed:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise bad_file(path, f"is a damaged or truncated zip archive ({exc})") from None
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    prefix = sorted(tops)[0] if len(tops) == 1 else ""
    rest = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in rest:
        return Sniffed(path, "pt2", size, prefix)
    if "constants.pkl" in rest or any(r.startswith("code/") for r in rest):
        return Sniffed(path, "torchscript", size, prefix)
    if "data.pkl" in rest:
        return Sniffed(path, "torch_zip", size, prefix)
    if names and all(n.endswith(".npy") for n in names):  # numpy.savez
        return Sniffed(path, "npz", size)
    if "model.weights.h5" in names:
        raise bad_file(path, "is a Keras model (.keras): paramscope reads PyTorch checkpoints, safetensors and NumPy .npz")
    raise bad_file(path, "is a zip archive, but not a torch checkpoint (no data.pkl inside)")
