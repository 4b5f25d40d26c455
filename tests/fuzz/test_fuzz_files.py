"""Fuzzing the files the app reads: safetensors headers, shard indexes, torch files, DCP metadata.

Random and mutated bytes are written to temporary files and opened the way the app opens them.
Property: a model/correct result or a :class:`ParamscopeError` with a one-line message.
"""

from __future__ import annotations

import json
import struct
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from fuzz_guard import assert_clean_outcome, no_hang
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.dcp import read_metadata
from paramscope.core.files.safetensors_io import read_header
from paramscope.core.files.safetensors_write import write_safetensors
from paramscope.core.files.sharded import read_index
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import open_source

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _opens_or_fails_cleanly(path: Path, reader=None) -> object | None:
    """``reader(path)`` (default: open_source as the app does) or a clean error."""
    with no_hang():
        try:
            if reader is not None:
                return reader(path)
            opened = open_source(str(path))
        except ParamscopeError as exc:
            assert_clean_outcome(exc)
            return None
        assert opened.model is not None
        # what the app then does with the tensors: read every value once
        for tensor in list(opened.model.parameters()) + list(opened.model.buffers()):
            if not tensor.is_meta:
                tensor.float().sum()
        return opened


# --- safetensors ------------------------------------------------------------------------------

DTYPES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "F4", "C64", "XX", 7, None]
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=8)
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
entry = st.one_of(
    st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(DTYPES),
            "shape": st.one_of(st.lists(st.integers(-2, 5), max_size=3), json_value),
            "data_offsets": st.one_of(st.lists(st.integers(-4, 80), min_size=2, max_size=2), json_value),
        }
    ),
    json_value,
)
header = st.dictionaries(
    st.one_of(st.sampled_from(["w", "0.weight", "__metadata__", "a.b.c"]), st.text(max_size=6)),
    entry,
    max_size=4,
)


def _write_safetensors_bytes(folder: Path, header_bytes: bytes, data: bytes, claimed: int | None = None) -> Path:
    path = folder / "model.safetensors"
    length = len(header_bytes) if claimed is None else claimed
    path.write_bytes(struct.pack("<Q", length) + header_bytes + data)
    return path


@FUZZ
@given(head=header, data=st.binary(max_size=96))
def test_random_safetensors_headers(head: dict, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write_safetensors_bytes(Path(folder), json.dumps(head).encode(), data)
        _opens_or_fails_cleanly(path, read_header)
        _opens_or_fails_cleanly(path)


@FUZZ
@given(raw=st.binary(max_size=200), claimed=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_random_safetensors_bytes(raw: bytes, claimed: int | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write_safetensors_bytes(Path(folder), raw, b"", claimed)
        _opens_or_fails_cleanly(path)


@pytest.fixture(scope="module")
def real_safetensors(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("st") / "model.safetensors"
    write_safetensors(build_demo("mlp").state_dict(), path)
    return path.read_bytes()


mutation = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=4)


def _mutate(blob: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(blob)
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    return bytes(data[: cut % (len(data) + 1)] if cut is not None else data)


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flips=mutation, cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_safetensors(real_safetensors: bytes, flips: list, cut: int | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        path.write_bytes(_mutate(real_safetensors, flips, cut))
        _opens_or_fails_cleanly(path)


SAFETENSORS_REGRESSIONS = [
    b"[" * 100_000,  # json recursion
    b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}',  # int digit limit
    b'{"w": {"dtype": "F32", "shape": [1e400], "data_offsets": [0, 4]}}',
    b'{"w": {"dtype": "F32", "shape": [true], "data_offsets": [0, 4]}}',
    b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": [1]}',
    b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": {"a": {"b": 1}}}',
    b'{"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}',
    b'{"w": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, "v": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}',
    b'{"\\ud800": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
    b"\xff\xfe",
    b"NaN",
]


@pytest.mark.parametrize("head", SAFETENSORS_REGRESSIONS, ids=lambda b: repr(b[:20]))
def test_safetensors_regressions(head: bytes, tmp_path: Path) -> None:
    path = _write_safetensors_bytes(tmp_path, head, b"\0" * 16)
    _opens_or_fails_cleanly(path, read_header)
    _opens_or_fails_cleanly(path)


# --- shard indexes ----------------------------------------------------------------------------

weight_map = st.one_of(
    st.dictionaries(
        st.text(max_size=6),
        st.one_of(
            st.sampled_from(["shard.safetensors", "../x.safetensors", "/etc/passwd", "", "\x00", ".", "sub/"]),
            st.text(max_size=6),
            json_value,
        ),
        max_size=3,
    ),
    json_value,
)
index_doc = st.one_of(st.fixed_dictionaries({"weight_map": weight_map, "metadata": json_value}), json_value)


@pytest.fixture(scope="module")
def shard_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("shard") / "shard.safetensors"
    write_safetensors({"w": torch.ones(2)}, path)
    return path.read_bytes()


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=index_doc)
def test_random_index_files(shard_bytes: bytes, doc: object) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "shard.safetensors").write_bytes(shard_bytes)
        path = Path(folder) / "model.safetensors.index.json"
        path.write_text(json.dumps(doc))
        _opens_or_fails_cleanly(path, read_index)
        _opens_or_fails_cleanly(path)


INDEX_REGRESSIONS = [
    '{"weight_map": {"w": "\\u0000"}}',  # embedded null byte in a path
    '{"weight_map": {"w": "."}}',
    '{"weight_map": {"w": "sub/"}}',
    '{"weight_map": {"w": "shard.safetensors", "v": "shard.safetensors"}}',
    '{"weight_map": {"w": "' + "a" * 5000 + '"}}',  # file name too long
    '{"weight_map": {"w": "shard.safetensors"}, "metadata": [1]}',
    "[" * 100_000,
    '{"weight_map": {"w": "shard.safetensors"}, "n": ' + "9" * 5000 + "}",
]


@pytest.mark.parametrize("text", INDEX_REGRESSIONS, ids=lambda t: repr(t[:24]))
def test_index_regressions(text: str, tmp_path: Path, shard_bytes: bytes) -> None:
    (tmp_path / "shard.safetensors").write_bytes(shard_bytes)
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(text)
    _opens_or_fails_cleanly(path, read_index)
    _opens_or_fails_cleanly(path)


# --- torch zip and legacy files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("pt")
    state = build_demo("mlp").state_dict()
    torch.save(state, folder / "zip.pt")
    torch.save(state, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    return {name: (folder / f"{name}.pt").read_bytes() for name in ("zip", "legacy")}


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["zip", "legacy"]), flips=mutation, cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_torch_files(torch_files: dict[str, bytes], kind: str, flips: list, cut: int | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(_mutate(torch_files[kind], flips, cut))
        _opens_or_fails_cleanly(path)


@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_every_truncation_of_a_torch_file(torch_files: dict[str, bytes], kind: str, tmp_path: Path) -> None:
    blob = torch_files[kind]
    path = tmp_path / "model.pt"
    for cut in range(0, len(blob), max(1, len(blob) // 60)):
        path.write_bytes(blob[:cut])
        _opens_or_fails_cleanly(path)


# --- NumPy .npz and .npy ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def numpy_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    import numpy as np

    folder = tmp_path_factory.mktemp("npz")
    arrays = {"Dense_0/kernel": np.ones((3, 4), np.float32), "step": np.array(7), "scale": np.ones(2, ">f8")}
    np.savez(folder / "stored.npz", **arrays)
    np.savez_compressed(folder / "deflated.npz", **arrays)
    np.save(folder / "one.npy", np.arange(12.0).reshape(3, 4))
    return {name: (folder / name).read_bytes() for name in ("stored.npz", "deflated.npz", "one.npy")}


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["stored.npz", "deflated.npz", "one.npy"]),
    flips=mutation,
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_mutated_numpy_files(numpy_files: dict[str, bytes], kind: str, flips: list, cut: int | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / kind
        path.write_bytes(_mutate(numpy_files[kind], flips, cut))
        _opens_or_fails_cleanly(path)


@pytest.mark.parametrize("kind", ["stored.npz", "deflated.npz", "one.npy"])
def test_every_truncation_of_a_numpy_file(numpy_files: dict[str, bytes], kind: str, tmp_path: Path) -> None:
    blob = numpy_files[kind]
    path = tmp_path / kind
    for cut in range(0, len(blob), max(1, len(blob) // 80)):
        path.write_bytes(blob[:cut])
        _opens_or_fails_cleanly(path)


# --- DCP metadata -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcp_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch.distributed.checkpoint as dcp

    folder = tmp_path_factory.mktemp("dcp") / "ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save({"w": torch.arange(6.0).reshape(2, 3), "step": torch.tensor(3)}, checkpoint_id=str(folder))
    return folder


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(flips=mutation, cut=st.one_of(st.none(), st.integers(0, 10**6)), raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_mutated_dcp_metadata(dcp_folder: Path, flips: list, cut: int | None, raw: bytes | None) -> None:
    import shutil

    original = (dcp_folder / ".metadata").read_bytes()
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "ckpt"
        shutil.copytree(dcp_folder, copy)
        (copy / ".metadata").write_bytes(raw if raw is not None else _mutate(original, flips, cut))
        _opens_or_fails_cleanly(copy, read_metadata)
        _opens_or_fails_cleanly(copy)


def test_intact_files_still_open(dcp_folder: Path, torch_files: dict[str, bytes], tmp_path: Path) -> None:
    """The fuzz targets are real files the app opens: mutations start from a working case."""
    assert _opens_or_fails_cleanly(dcp_folder) is not None
    for kind, blob in torch_files.items():
        path = tmp_path / f"{kind}.pt"
        path.write_bytes(blob)
        assert _opens_or_fails_cleanly(path) is not None


def test_pickle_memo_index_cannot_exhaust_memory(dcp_folder: Path, tmp_path: Path) -> None:
    """LONG_BINPUT 0x7fffffff: the C unpickler grew its memo to 2**31 slots (gigabytes) on a flipped bit."""
    import shutil

    from paramscope.core.files.pickle_scan import scan_pickle

    forged = b"\x80\x02K\x01r\xff\xff\xff\x7f."
    with no_hang():
        assert scan_pickle(forged).top_level == 1
        copy = tmp_path / "ckpt"
        shutil.copytree(dcp_folder, copy)
        (copy / ".metadata").write_bytes(forged)
        with pytest.raises(ParamscopeError, match="not torch.distributed.checkpoint metadata"):
            read_metadata(copy)


# --- hostile pickles: programs of repeated opcodes, deflated into a torch zip file ----------------

SNIPPETS = [
    b"N", b"0", b"(", b"]", b"}", b")", b"a", b"e", b"s", b"u", b"t", b"l", b"d", b"2", b"\x94",
    b"h\x00", b"q\x00", b"r\xff\xff\xff\x7f", b"j\x01\x00\x00\x00", b"K\x07", b"X\x01\x00\x00\x00k",
    b"\x8e\x00\x00\x00\x00\x00\x00\x01\x00", b"\x96\xff\xff\xff\xff\xff\x00\x00\x00",
    b"ctorch._utils\n_rebuild_tensor_v2\n", b"ccollections\nOrderedDict\n", b"R", b"b", b"Q", b"\x85",
    b"N0", b"N0", b"N\x940", b"N\x940", b"}X\x01\x00\x00\x00kNs0",  # stack-neutral: opcodes, memo
]
program = st.lists(st.tuples(st.sampled_from(SNIPPETS), st.integers(1, 300_000)), min_size=1, max_size=8)


@settings(FUZZ, max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(parts=program, legacy=st.booleans())
def test_hostile_pickle_programs_end_quickly(torch_files: dict[str, bytes], parts: list, legacy: bool) -> None:
    """Millions of opcodes from a few KB: the scan stops at its limits, well inside no_hang."""
    import io
    import pickle
    import zipfile

    from paramscope.core.files.sniff import LEGACY_MAGIC

    pkl = b"\x80\x02" + b"".join(chunk * count for chunk, count in parts) + b"."
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        if legacy:
            head = io.BytesIO()
            for value in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(value, head, protocol=2)
            path.write_bytes(head.getvalue() + pkl + pickle.dumps([], protocol=2))
        else:
            with zipfile.ZipFile(io.BytesIO(torch_files["zip"])) as src, zipfile.ZipFile(path, "w") as dst:
                for info in src.infolist():
                    is_pkl = info.filename.endswith("/data.pkl")
                    data = pkl if is_pkl else src.read(info)
                    dst.writestr(info.filename, data, zipfile.ZIP_DEFLATED if is_pkl else zipfile.ZIP_STORED)
        _opens_or_fails_cleanly(path)
