"""No code from a data file runs without consent; bad files give one line naming the file.

The corpus of bad files is built here, in tmp_path: empty, truncated, random bytes, git-lfs
pointers, lying safetensors headers, forged storage sizes, shards outside the folder, ...
"""

from __future__ import annotations

import collections
import io
import json
import os
import pathlib
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from paramscope.core.edit.session import Session
from paramscope.core.errors import SourceError
from paramscope.core.files import UntrustedFileError, safety
from paramscope.core.files.sniff import LEGACY_MAGIC
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import open_source


class Marker:
    """Unpickling this creates ``path``: proof that code from the file ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _evil_state(marker: Path) -> dict[str, object]:
    return {"weight": torch.ones(2, 2), "payload": Marker(marker)}


def _assert_refused(path: Path, marker: Path) -> UntrustedFileError:
    with pytest.raises(UntrustedFileError) as info:
        open_source(str(path))
    assert not marker.exists()
    message = str(info.value)
    assert str(path) in message and "--trust" in message and "\n" not in message
    assert "weights_only" not in message
    return info.value


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_marker_pickle_refused_in_zip_format(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / f"evil{suffix}"
    torch.save(_evil_state(marker), path)
    error = _assert_refused(path, marker)
    assert "pathlib" in str(error)  # the message says what the file wants to import


def test_marker_pickle_refused_in_legacy_format_and_plain_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    legacy = tmp_path / "evil_legacy.pt"
    torch.save(_evil_state(marker), legacy, _use_new_zipfile_serialization=False)
    _assert_refused(legacy, marker)
    plain = tmp_path / "evil_plain.bin"
    plain.write_bytes(pickle.dumps(_evil_state(marker)))
    _assert_refused(plain, marker)


def test_marker_pickle_disguised_as_safetensors(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "model.safetensors"
    torch.save(_evil_state(marker), path)
    _assert_refused(path, marker)


def test_marker_pickle_inside_a_shard(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    save_file({"a": torch.ones(2)}, str(tmp_path / "part-1.safetensors"))
    torch.save(_evil_state(marker), tmp_path / "part-2.bin")
    index = tmp_path / "model.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "part-1.safetensors", "weight": "part-2.bin"}}))
    with pytest.raises(UntrustedFileError) as info:
        open_source(str(index))
    assert not marker.exists()
    assert "part-2.bin" in str(info.value)


def test_marker_runs_only_with_trust(tmp_path: Path) -> None:
    """The same file opens with trust, and then its code does run: the refusal is what saved us."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save(_evil_state(marker), path)
    _assert_refused(path, marker)
    opened = open_source(str(path), trust=True)
    assert marker.exists()
    assert dict(opened.model.named_parameters())["weight"].shape == (2, 2)


def _forged_legacy(path: Path, numel: int) -> None:
    """A legacy-format file whose one storage declares ``numel`` floats but holds none."""

    class Storage:
        pass

    storage = Storage()

    class Rebuild:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (storage, 0, (numel,), (1,), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", torch.FloatStorage, "0", "cpu", numel, None)
            return None

    buffer = io.BytesIO()
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for value in (LEGACY_MAGIC, 1001, sys_info):
        pickle.dump(value, buffer, protocol=2)
    Pickler(buffer, protocol=2).dump({"w": Rebuild()})
    pickle.dump(["0"], buffer, protocol=2)
    buffer.write(struct.pack("<q", numel))
    path.write_bytes(buffer.getvalue())


def _zip_with_short_storage(path: Path) -> None:
    source = path.with_name("good.pt")
    torch.save({"w": torch.ones(100)}, source)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/data/0"):
                data = data[:8]
            dst.writestr(info.filename.replace("good", path.stem), data)
    source.unlink()


def _safetensors_with(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _truncated(path: Path, writer: Callable[[Path], None], keep: float) -> None:
    writer(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _index(path: Path, weight_map: dict[str, str]) -> None:
    path.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def _good_safetensors(path: Path) -> None:
    save_file({"w": torch.ones(64)}, str(path))


CORPUS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "empty": ("empty.pt", lambda p: p.write_bytes(b""), "is empty"),
    "random bytes": ("random.pt", lambda p: p.write_bytes(os.urandom(1000)), "not a model file"),
    "text": ("notes.pth", lambda p: p.write_text("hello, weights"), "not a model file"),
    "git-lfs pointer": (
        "model.safetensors",
        lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"),
        "git-lfs pointer",
    ),
    "truncated zip": ("cut.pt", lambda p: _truncated(p, lambda q: torch.save(build_demo("cnn").state_dict(), q), 0.5), "truncated"),
    "truncated safetensors": ("cut.safetensors", lambda p: _truncated(p, _good_safetensors, 0.6), "past the end"),
    "offsets past the end": (
        "lie.safetensors",
        lambda p: _safetensors_with(p, {"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}}, b"\0" * 16),
        "past the end",
    ),
    "shape vs offsets": (
        "lie2.safetensors",
        lambda p: _safetensors_with(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 16),
        "needs 16 bytes",
    ),
    "overlapping tensors": (
        "overlap.safetensors",
        lambda p: _safetensors_with(
            p,
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
            b"\0" * 16,
        ),
        "overlaps",
    ),
    "header length lies": ("huge.safetensors", lambda p: p.write_bytes(struct.pack("<Q", 10**12) + b"{}"), "header claims"),
    "header not json": ("bad.safetensors", lambda p: p.write_bytes(struct.pack("<Q", 5) + b"{nope"), "not valid JSON"),
    "unknown dtype": (
        "dtype.safetensors",
        lambda p: _safetensors_with(p, {"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        "unknown dtype",
    ),
    "zip storage declares more than it holds": ("short.pt", _zip_with_short_storage, "holds only"),
    "legacy storage of 256 GiB in a tiny file": ("forged.pt", lambda p: _forged_legacy(p, 64 * 1024**3), "declares 256.0 GiB"),
    "zip that is not torch": ("other.pt", lambda p: zipfile.ZipFile(p, "w").writestr("readme.txt", "hi"), "no data.pkl"),
    "index naming a missing shard": ("model.index.json", lambda p: _index(p, {"w": "missing.safetensors"}), "does not exist"),
    "index escaping the folder": ("escape.index.json", lambda p: _index(p, {"w": "../outside.safetensors"}), "outside"),
    "index with absolute shard": ("abs.index.json", lambda p: _index(p, {"w": "/etc/passwd"}), "not a plain file name"),
    "index without weight_map": ("model.index.json", lambda p: p.write_text('{"weight_map": [1, 2]}'), "no valid weight_map"),
    "folder": ("folder", lambda p: p.mkdir(), "is a folder"),
}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_file_gives_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    name, writer, expected = CORPUS[case]
    folder = tmp_path / "case"
    folder.mkdir()
    if "escaping" in case:
        _good_safetensors(tmp_path / "outside.safetensors")  # it exists, and is still refused
    path = folder / name
    writer(path)
    before = _snapshot(tmp_path)
    with pytest.raises(SourceError) as info:
        open_source(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "weights_only" not in message
    assert _snapshot(tmp_path) == before


def test_zip_bomb_refused_by_declared_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.pt"
    torch.save({"w": torch.zeros(1000)}, path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/extra", b"\0" * (8 * 1024 * 1024))  # compresses to a few KiB
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(safety, "available_memory", lambda: 4 * 1024 * 1024)
    with pytest.raises(SourceError, match="once unpacked"):
        open_source(str(path))


def test_legacy_file_larger_than_available_memory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.pt"
    torch.save({"w": torch.ones(1000)}, path, _use_new_zipfile_serialization=False)  # cannot be mapped
    monkeypatch.setattr(safety, "available_memory", lambda: 1000)
    with pytest.raises(SourceError, match="memory available"):
        open_source(str(path))


def test_safetensors_larger_than_available_memory_opens_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is read until a tensor is looked at; an edit reads that tensor, the file stays."""
    path = tmp_path / "big.safetensors"
    state = {"w": torch.arange(1000, dtype=torch.float32)}
    save_file(state, str(path))
    monkeypatch.setattr(safety, "available_memory", lambda: 1000)
    session = Session(open_source(str(path)))
    assert session.model.w.device.type == "meta"
    assert torch.equal(session.values("w"), state["w"])
    with torch.no_grad():
        session.editable("w").add_(1)
    assert torch.equal(session.model.w.detach(), state["w"] + 1)
    assert torch.equal(load_file(str(path))["w"], state["w"])


def test_pt_larger_than_available_memory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .pt file is read whole (never mapped); one that cannot fit is refused in one line."""
    path = tmp_path / "big.pt"
    torch.save({"w": torch.arange(1000, dtype=torch.float32)}, path)
    monkeypatch.setattr(safety, "available_memory", lambda: 1000)
    with pytest.raises(SourceError, match="memory available"):
        open_source(str(path))


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.pt"
    torch.save({"w": torch.ones(1)}, path)
    if os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads anything: make the open fail the way it fails for a user

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(safety, "open", refuse, raising=False)
    with pytest.raises(SourceError, match="permission denied") as info:
        open_source(str(path))
    assert str(path) in str(info.value)
