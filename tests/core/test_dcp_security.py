"""DCP folders written by torch's own writer, then altered the way an attacker would.

Each attack must be refused in one line naming the file, with nothing run: a payload that would
run creates a marker file, and no test may find it.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex

from paramscope.core.errors import SourceError
from paramscope.core.sources.sources import open_source

APP = str(Path(__file__).resolve().parents[2] / "app")


class Payload:
    """Pickles to ``os.system('touch MARKER')``: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _save(folder: Path, state: dict) -> Path:
    dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    return folder


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two tensors and a byte entry whose pickle would touch a marker file."""
    root = tmp_path_factory.mktemp("dcp_clean")
    state = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.ones(4), "evil": Payload(root / "MARKER")}
    return _save(root / "ckpt", state)


@pytest.fixture
def copy(clean: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(clean, folder)
    return folder


@pytest.fixture
def marker(clean: Path) -> Iterator[Path]:
    """Where the byte entry's payload would leave its mark (none may exist after a test)."""
    path = clean.parent / "MARKER"
    yield path
    assert not path.exists(), "a payload ran"


def _raw(folder: Path):
    """The folder's metadata as torch wrote it (our own test folder: plain pickle is fine)."""
    return pickle.loads((folder / ".metadata").read_bytes())


def _write(folder: Path, metadata: object) -> None:
    (folder / ".metadata").write_bytes(pickle.dumps(metadata, protocol=2))


def _read_everything(folder: Path) -> None:
    """Open the folder and read each tensor through the loader, as the window and export do."""
    opened = open_source(str(folder))
    for name, tensor in opened.model.state_dict().items():
        if tensor.device.type == "meta":
            opened.loader(name)


def _refused(folder: Path, *needles: str) -> str:
    with pytest.raises(SourceError) as info:
        _read_everything(folder)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message
    for needle in needles:
        assert needle in message
    return message


def test_the_byte_entry_would_run_its_payload_under_torch(copy: Path, marker: Path) -> None:
    """The fixture is live: torch's own loader runs the byte entry's pickle."""
    target: dict = {"evil": None}
    dcp.load(target, checkpoint_id=str(copy), no_dist=True)
    assert marker.exists()
    marker.unlink()


def test_clean_folder_lists_the_byte_entry_without_loading_it(copy: Path, marker: Path) -> None:
    opened = open_source(str(copy))
    assert opened.extras == {"evil": "pickled object, not loaded"}
    assert torch.equal(opened.loader("w"), torch.arange(12.0).reshape(3, 4))
    assert not marker.exists()


def test_byte_entry_given_tensor_fields_is_refused_and_never_unpickled(copy: Path, marker: Path) -> None:
    """BUILD state gives a BytesStorageMetadata size/properties/chunks: torch would unpickle it."""
    meta = _raw(copy)
    tensor_meta = meta.state_dict_metadata["b"]
    evil = meta.state_dict_metadata["evil"]
    evil.__dict__.update(
        properties=tensor_meta.properties,
        size=torch.Size([4]),
        chunks=[ChunkStorageMetadata(torch.Size([0]), torch.Size([4]))],
    )
    info = meta.storage_data[MetadataIndex("evil")]
    meta.storage_data[MetadataIndex("evil", torch.Size([0]), 0)] = info
    _write(copy, meta)
    _refused(copy, ".metadata", "BytesStorageMetadata has no field", "nothing was run")
    assert not marker.exists()


def test_byte_entry_is_never_read_even_when_asked_for(copy: Path, marker: Path) -> None:
    from paramscope.core.files.dcp import DcpEntry, load_tensors

    # a byte entry dressed as a tensor entry by the caller: the metadata still says bytes
    with pytest.raises(SourceError) as info:
        load_tensors(copy, [DcpEntry("evil", (4,), torch.float32, 1)])
    assert "\n" not in str(info.value) and not marker.exists()


def _with_prefix(folder: Path, prefix: bytes) -> None:
    """Run ``prefix`` (protocol-2 opcodes leaving one object), drop its result, then the real metadata."""
    body = pickle.dumps(_raw(folder), protocol=2)
    assert body[:2] == b"\x80\x02"
    (folder / ".metadata").write_bytes(b"\x80\x02" + prefix + b"0" + body[2:])


def _text(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def test_state_cannot_set_attributes_of_an_allowed_class(copy: Path) -> None:
    """BUILD on a class object: (None, {'__fspath__': set}) would replace PurePosixPath.__fspath__."""
    assert "__fspath__" not in vars(PurePosixPath)  # inherited from PurePath
    prefix = b"cpathlib\nPurePosixPath\n" + b"N}" + _text("__fspath__") + b"cbuiltins\nset\ns\x86b"
    _with_prefix(copy, prefix)
    try:
        _refused(copy, ".metadata", "nothing was run")
        assert "__fspath__" not in vars(PurePosixPath)
    finally:
        if "__fspath__" in vars(PurePosixPath):  # keep the test process usable if the check failed
            del PurePosixPath.__fspath__


def test_state_cannot_set_undeclared_attributes(copy: Path) -> None:
    meta = _raw(copy)
    meta.state_dict_metadata["w"].__dict__["read_data"] = "anything"
    _write(copy, meta)
    _refused(copy, ".metadata", "TensorStorageMetadata has no field read_data")


def test_state_is_given_once_to_a_fresh_instance(copy: Path) -> None:
    """A memoized instance given state a second time (replacing a checked field) is refused."""
    prefix = (
        b"ctorch.distributed.checkpoint.metadata\nBytesStorageMetadata\n)\x81q\x00"
        b"}b" + b"h\x00}" + _text("x") + b"Ns" + b"b"
    )
    _with_prefix(copy, prefix)
    _refused(copy, ".metadata", "nothing was run")


@pytest.mark.parametrize("state", ["tuple", "dict"])
def test_properties_with_a_fake_dtype_are_refused(copy: Path, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    """torch pickles TensorProperties as a tuple; a file may give a dict of its fields instead."""
    from torch.distributed.checkpoint.metadata import TensorProperties

    if state == "dict":
        # memory formats do not pickle; the field's default stands in
        monkeypatch.setattr(TensorProperties, "__getstate__", lambda self: {k: v for k, v in vars(self).items() if k != "memory_format"})
    meta = _raw(copy)
    meta.state_dict_metadata["w"].properties.__dict__["dtype"] = torch.Size([1])
    _write(copy, meta)
    message = _refused(copy, ".metadata")
    if state == "dict":  # a declared field, so the unpickler sets it: the check refuses it
        assert "dtype is a Size, not a torch.dtype" in message


def test_chunks_must_cover_the_tensor(copy: Path) -> None:
    """A chunk smaller than its tensor would leave values unread (shown as if they were data)."""
    meta = _raw(copy)
    meta.state_dict_metadata["w"].chunks[0].sizes = torch.Size([2, 4])
    _write(copy, meta)
    _refused(copy, ".metadata", "do not cover")


def test_the_check_alone_refuses_a_byte_entry_with_fields(copy: Path) -> None:
    """Second line: should the unpickler ever let fields onto a byte entry, the check refuses it."""
    from paramscope.core.files.dcp_metadata import _Bad, _clean_metadata

    meta = _raw(copy)
    vars(meta.state_dict_metadata["evil"]).update(vars(meta.state_dict_metadata["b"]))
    with pytest.raises(_Bad, match="evil: entry is a BytesStorageMetadata"):
        _clean_metadata(meta)


@pytest.mark.parametrize("where", ["absolute", "absolute_inside", "dotdot", "dotdot_back_in", "symlink"])
def test_storage_paths_stay_inside_the_folder(copy: Path, tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(copy / "__0_0.distcp", outside / "__0_0.distcp")  # readable data elsewhere on disk
    relative = {
        "absolute": str(outside / "__0_0.distcp"),
        "absolute_inside": str(copy / "__0_0.distcp"),  # the right file, named the wrong way
        "dotdot": "../outside/__0_0.distcp",
        "dotdot_back_in": "../ckpt/__0_0.distcp",  # lands inside again, but names a way out
        "symlink": "link.distcp",
    }[where]
    if where == "symlink":
        (copy / "link.distcp").symlink_to(outside / "__0_0.distcp")
    meta = _raw(copy)
    for info in meta.storage_data.values():
        info.relative_path = relative
    _write(copy, meta)
    _refused(copy, "data file", "folder")


def test_a_tensor_record_that_is_another_pickle_is_not_loaded(copy: Path, marker: Path) -> None:
    """A tensor's record replaced by a torch.save of a payload: torch reads records weights_only;
    the one-line error never passes on torch's advice to retry with weights_only=False."""
    import io

    blob = io.BytesIO()
    torch.save(Payload(marker), blob)
    data = copy / "__0_0.distcp"
    start = data.stat().st_size
    with data.open("ab") as f:
        f.write(blob.getvalue())
    meta = _raw(copy)
    info = meta.storage_data[next(i for i in meta.storage_data if i.fqn == "w")]
    info.offset, info.length = start, len(blob.getvalue())
    _write(copy, meta)
    message = _refused(copy, "__0_0.distcp", "reading w")
    assert "weights" not in message.lower()


def test_chunk_ranges_lie_inside_the_data_file(copy: Path) -> None:
    meta = _raw(copy)
    info = meta.storage_data[next(i for i in meta.storage_data if i.fqn == "w")]
    info.length = (copy / "__0_0.distcp").stat().st_size * 2
    _write(copy, meta)
    _refused(copy, "__0_0.distcp", "reads up to byte")


def test_a_fifo_as_data_file_is_refused_without_opening_it(copy: Path) -> None:
    """Opening a FIFO blocks forever: run in a child with a deadline so a regression fails, not hangs."""
    os.mkfifo(copy / "pipe.distcp")
    meta = _raw(copy)
    for info in meta.storage_data.values():
        info.relative_path = "pipe.distcp"
    _write(copy, meta)
    out = copy.parent / "out.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "paramscope", "export", str(copy), "-o", str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": APP},
    )
    assert proc.returncode != 0 and "not a regular file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()


# Dangerous names next to the allowed ones: the allow-list is exact (module, name) pairs.
DANGEROUS = [
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("builtins", "open"),
    ("builtins", "set.__init__"),
    ("pathlib", "Path.write_text"),
    ("pathlib", "Path.unlink"),
    ("pathlib", "os"),
    ("pathlib", "PosixPath.write_bytes"),
    ("collections", "namedtuple"),
    ("collections", "OrderedDict.fromkeys"),
    ("torch", "load"),
    ("torch", "save"),
    ("torch", "Size.__class__"),
    ("torch", "float32.__class__"),
    ("torch", "_C"),
    ("torch.serialization", "load"),
    ("torch.serialization", "pickle"),
    ("torch.serialization", "_get_layout.__globals__"),
    ("torch.distributed.checkpoint.metadata", "os"),
    ("torch.distributed.checkpoint.metadata", "torch"),
    ("torch.distributed.checkpoint.metadata", "field"),
    ("torch.distributed.checkpoint.metadata", "Metadata.__init__"),
    ("torch.distributed.checkpoint.filesystem", "FileSystemReader"),
    ("torch.distributed.checkpoint.filesystem", "pickle"),
    ("torch.distributed.checkpoint.filesystem", "os"),
    ("torch.distributed.checkpoint.planner", "LoadPlanner"),
    ("os", "system"),
]


@pytest.mark.parametrize(("module", "name"), DANGEROUS)
def test_allow_list_is_exact_names(tmp_path: Path, module: str, name: str) -> None:
    from paramscope.core.files.dcp import read_metadata

    folder = tmp_path / "ckpt"
    folder.mkdir()
    # protocol 4 STACK_GLOBAL (dotted names resolve attribute chains), called with one string
    data = (
        b"\x80\x04" + b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) + name.encode()
        + b"\x93" + b"\x8c\x01x\x85R."
    )
    (folder / ".metadata").write_bytes(data)
    with pytest.raises(SourceError, match="refused to load") as info:
        read_metadata(folder)
    assert f"{module}.{name}" in str(info.value) and "\n" not in str(info.value)


def test_eval_payload_runs_nothing(tmp_path: Path) -> None:
    from paramscope.core.files.dcp import read_metadata

    folder = tmp_path / "ckpt"
    folder.mkdir()
    marker = tmp_path / "MARKER"
    code = f"open({str(marker)!r}, 'w')"
    (folder / ".metadata").write_bytes(b"cbuiltins\neval\n(" + b"V" + code.encode() + b"\ntR.")
    with pytest.raises(SourceError, match="nothing was run"):
        read_metadata(folder)
    assert not marker.exists()


def test_allowed_classes_cannot_be_called_with_arguments(tmp_path: Path) -> None:
    """Only value types are called; the metadata dataclasses are made empty and given checked fields."""
    from paramscope.core.files.dcp import read_metadata

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / ".metadata").write_bytes(b"\x80\x02ctorch.distributed.checkpoint.metadata\nMetadata\n]\x85R.")
    with pytest.raises(SourceError, match="refused to call Metadata"):
        read_metadata(folder)
