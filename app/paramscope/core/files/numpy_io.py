"""NumPy weight files: ``.npz`` (``numpy.savez``: the original JAX/Flax ViT checkpoints, weights
exported from other frameworks) and a single ``.npy`` array.

Read with ``numpy.load(allow_pickle=False)``, which refuses object arrays (the only part of the
format that unpickles) and parses each array's header without evaluating code. Every array is
read into memory after the archive's declared sizes are checked against free memory, and the
file must be the same version before and after (a rewrite while reading is refused).

Names separated by ``/`` (``Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel``) become the
dotted levels of the module tree; arrays of no number type torch holds (strings, records) are
kept out, with a note.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from paramscope.core.errors import shown
from paramscope.core.files.regions import FileStamp
from paramscope.core.files.safety import bad_file, check_fits_memory, first_line, human_bytes
from paramscope.core.files.statedict import Checkpoint

_NUMBER_KINDS = frozenset("biufc")  # bool, signed, unsigned, float, complex
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, NotImplementedError)


def read_npz(path: Path) -> Checkpoint:
    """The arrays of a ``numpy.savez`` file as tensors, named by their keys.

    Raises:
        SourceError: damaged, object arrays (they need unpickling), more than memory, or
            changed while read.
    """
    with open(path, "rb") as handle:
        stamp = FileStamp.of(path, handle)
        try:
            with zipfile.ZipFile(handle) as archive:
                check_fits_memory(path, sum(info.file_size for info in archive.infolist()), "arrays")
                for info in archive.infolist():
                    with archive.open(info) as member:
                        _check_claim(path, info.filename.removesuffix(".npy"), member, info.file_size)
            arrays = _arrays(path, handle)
        except _READ_ERRORS as exc:
            raise bad_file(path, f"cannot be read as a NumPy .npz file: {_why(exc)}") from None
        stamp.check(handle)
    return _checkpoint(path, arrays)


def read_npy(path: Path) -> Checkpoint:
    """A single ``.npy`` array as one tensor named by the file (``layer.0.weight.npy``)."""
    with open(path, "rb") as handle:
        stamp = FileStamp.of(path, handle)
        check_fits_memory(path, stamp.size, "array data")
        try:
            _check_claim(path, path.name, handle, stamp.size)
            handle.seek(0)
            array = np.load(handle, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise bad_file(path, f"cannot be read as a NumPy .npy file: {_why(exc)}") from None
        stamp.check(handle)
    return _checkpoint(path, {path.name.removesuffix(".npy") or "array": array})


def _check_claim(path: Path, name: str, stream: BinaryIO, size: int) -> None:
    """Refuse an array whose header claims more bytes than its ``size`` bytes hold (numpy
    allocates the claim first: a forged shape asked for terabytes)."""
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _fortran, dtype = read_header(stream)
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > size:
        raise bad_file(
            path, f"array {shown(name)!r} {dtype}{list(shape)} claims {human_bytes(claimed)} but holds {human_bytes(size)}: damaged or forged"
        )


def _arrays(path: Path, handle: BinaryIO) -> dict[str, np.ndarray]:
    handle.seek(0)
    with np.load(handle, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _why(exc: BaseException) -> str:
    text = first_line(exc)
    if "allow_pickle" in text:  # numpy's own advice would be to unpickle: never
        return "it holds Python objects (an object array), which only unpickling reads; paramscope never unpickles them"
    return text


def _checkpoint(path: Path, arrays: dict[str, np.ndarray]) -> Checkpoint:
    tensors: dict[str, torch.Tensor] = {}
    kept_out: list[str] = []
    for key, array in arrays.items():
        if array.dtype.kind not in _NUMBER_KINDS or array.dtype.fields is not None:
            kept_out.append(f"{shown(key)!r} ({array.dtype})")
            continue
        if not array.dtype.isnative:  # written on a machine of the other byte order
            array = array.astype(array.dtype.newbyteorder("="))
        if not array.flags.c_contiguous:  # (Fortran order: JAX's kernels)
            array = array.copy(order="C")
        dotted = key.replace("/", ".")
        name = key if dotted in tensors or dotted in arrays and dotted != key else dotted  # ("a/b" beside "a.b")
        tensors[name] = torch.from_numpy(array)
    notes = []
    if any("/" in name for name in tensors):
        notes.append("names with '/' that another array's name would become are kept as stored")
    if any("/" in key for key in arrays):
        notes.append("names with '/' between levels are shown (and exported) with '.'")
    if kept_out:
        notes.append(f"{len(kept_out)} array(s) of no number type torch holds are not shown: " + ", ".join(kept_out[:5]))
    if not tensors:
        raise bad_file(path, "holds no numeric arrays" + (f" ({', '.join(kept_out[:3])})" if kept_out else ""))
    return Checkpoint(tensors, notes=notes, distinct=True)
