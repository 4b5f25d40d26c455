"""safetensors strictness: what the format forbids is refused, naming the rule; everything the
real library writes is still read. A zip .pt whose data.pkl fails its CRC is refused."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file, save_model

from paramscope.core.errors import SourceError
from paramscope.core.files.safetensors_io import read_header
from paramscope.core.files.safetensors_write import write_safetensors
from paramscope.core.sources.sources import open_source


def _entry(shape: list, offsets: list, dtype: str = "F32") -> str:
    return json.dumps({"dtype": dtype, "shape": shape, "data_offsets": offsets})


def _obj(*pairs: tuple[str, str]) -> str:
    """A JSON object from (key, JSON text) pairs, repeated keys kept as written."""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


def _write(path: Path, header: str, data: bytes) -> Path:
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


A = ("a", _entry([1], [0, 4]))
SHORT = '{"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}'
# name -> (header text, data bytes, the rule the refusal names, whether safetensors refuses it)
REFUSED = {
    "duplicate tensor name": (_obj(A, ("a", _entry([1], [4, 8]))), 8, "names 'a' twice", True),
    "duplicate, same entry": (_obj(A, A), 4, "names 'a' twice", False),
    "duplicate metadata key": (_obj(("__metadata__", '{"k":"1","k":"2"}'), A), 4, "names 'k' twice", False),
    "duplicate field": (SHORT, 4, "names 'dtype' twice", True),
    "gap between tensors": (_obj(A, ("b", _entry([1], [8, 12]))), 12, "4 byte(s) before tensor 'b' belong to no tensor", True),
    "gap at the start": (_obj(("a", _entry([1], [4, 8]))), 8, "before tensor 'a' belong to no tensor", True),
    "trailing bytes": (_obj(A), 8, "4 byte(s) after its last tensor", True),
    "trailing bytes, no tensors": ("{}", 4, "4 byte(s) after its last tensor", True),
    "boolean shape": (_obj(("a", _entry([True], [0, 4]))), 4, "invalid shape [True]", True),
    "boolean offsets": (_obj(("a", _entry([1], [False, True], "U8"))), 1, "invalid data_offsets [False, True]", True),
    "float shape": (_obj(("a", _entry([1.0], [0, 4]))), 4, "invalid shape [1.0]", True),
    "metadata value not a string": (_obj(("__metadata__", '{"k":1}'), A), 4, "must map strings to strings: 'k' is int 1", True),
    "metadata a list": (_obj(("__metadata__", '["k"]'), A), 4, "must be a map of strings to strings, not list", True),
    "metadata a string": (_obj(("__metadata__", '"k"'), A), 4, "not str", True),
    "metadata an empty string": (_obj(("__metadata__", '""'), A), 4, "not str", True),
    "lone surrogate name": (_obj(("\ud800x", _entry([1], [0, 4]))), 4, "not valid Unicode", True),
    "odd number of 4-bit values": (_obj(("a", _entry([3], [0, 2], "F4"))), 2, "not a whole number of bytes", False),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_format_forbids_is_refused_naming_the_rule(tmp_path: Path, case: str) -> None:
    header, data_len, rule, library_refuses = REFUSED[case]
    path = _write(tmp_path / "bad.safetensors", header, b"\0" * data_len)
    with pytest.raises(SourceError) as info:
        read_header(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and rule in message, message
    if library_refuses and "F4" not in header:
        with pytest.raises(Exception):  # noqa: B017,PT011  (the library's own error types vary)
            safe_open(str(path), "pt")
    with pytest.raises(SourceError):
        open_source(str(path))


ACCEPTED = {
    "header padded with spaces": (_obj(A) + "    ", 4),
    "null metadata": (_obj(("__metadata__", "null"), A), 4),
    "unknown extra field": ('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}', 4),
    "empty tensors between others": (_obj(A, ("z", _entry([0], [4, 4])), ("b", _entry([1], [4, 8]))), 8),
    "no tensors at all": ("{}", 0),
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_what_the_library_reads_is_accepted(tmp_path: Path, case: str) -> None:
    header, data_len = ACCEPTED[case]
    path = _write(tmp_path / "ok.safetensors", header, b"\0" * data_len)
    with safe_open(str(path), "pt") as handle:
        names = set(handle.keys())
    assert set(read_header(path)[0]) == names


DTYPES = [
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
    torch.int16, torch.int8, torch.uint8, torch.bool, torch.uint16, torch.uint32, torch.uint64,
    torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz,
    torch.complex64,
]


def _all_kinds() -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for dtype in DTYPES:
        name = str(dtype).removeprefix("torch.")
        tensors[f"{name}_t.full"] = torch.arange(6).reshape(2, 3).to(dtype)
        tensors[f"{name}_t.scalar"] = torch.tensor(1).to(dtype)
        tensors[f"{name}_t.empty"] = torch.zeros(0, 3, dtype=dtype)
    return tensors


def _bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def test_every_file_the_library_writes_is_read(tmp_path: Path) -> None:
    tensors = _all_kinds()
    save_file(tensors, str(tmp_path / "all.safetensors"), metadata={"format": "pt", "note": "x"})
    header, metadata, _ = read_header(tmp_path / "all.safetensors")
    assert set(header) == set(tensors) and metadata["note"] == "x"
    opened = open_source(str(tmp_path / "all.safetensors"))
    state = opened.model.state_dict()
    for name, tensor in tensors.items():  # byte for byte
        assert torch.equal(_bytes(state[name]), _bytes(tensor)), name
    tied = torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.Linear(2, 4, bias=False))
    tied[1].weight = tied[0].weight
    save_model(tied, str(tmp_path / "tied.safetensors"))
    read_header(tmp_path / "tied.safetensors")
    save_file({}, str(tmp_path / "none.safetensors"))
    read_header(tmp_path / "none.safetensors")


def test_every_file_paramscope_writes_is_read(tmp_path: Path) -> None:
    tensors = {k: v for k, v in _all_kinds().items() if "fnuz" not in k}
    write_safetensors(tensors, tmp_path / "own.safetensors")
    assert set(read_header(tmp_path / "own.safetensors")[0]) == set(tensors)


def test_zip_checkpoint_with_a_damaged_data_pkl_is_refused(tmp_path: Path) -> None:
    """zipfile checks data.pkl's CRC-32 as it is read whole (storage records are not checked:
    that would read every byte of a file that is otherwise mapped lazily)."""
    path = tmp_path / "crc.pt"
    torch.save({"weight": torch.ones(4)}, path)
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("crc/data.pkl").compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"weight")] = ord("W")  # still a valid pickle, with another name
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceError, match="Bad CRC-32 for file 'crc/data.pkl'"):
        open_source(str(path))
