"""Hostile files give one line on stderr, never a traceback or ``unexpected error``.

Each file is opened by ``python -m paramscope``, as a user would: exit status not 0, exactly one
line on stderr naming the file, no "Traceback", no torch advice about ``weights_only``, no torch
warning printed before it. Names that the terminal cannot encode (a lone surrogate read from a
pickle) are printed escaped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.core.errors import SourceError
from paramscope.core.files import readers
from paramscope.core.sources.sources import open_source

SURROGATE = "a\ud800b.weight"


def _paramscope(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONIOENCODING="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "paramscope", *map(str, args)],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        env=env,
        timeout=300,
        check=False,
    )


def _self_containing(path: Path) -> None:
    state: dict[str, object] = {"w": torch.ones(2)}
    state["self"] = state
    torch.save(state, path)


def _nested(path: Path) -> None:
    """A state_dict 5,000 dicts deep, written by torch.save's own pickler into the zip."""
    torch.save({"w": torch.ones(2)}, path)
    level = b"h\x00X\x01\x00\x00\x00a}q\x01s0h\x01q\x000"  # d["a"] = {}; d = that dict
    pkl = b"\x80\x02}q\x00q\x02" + level * 5000 + b"0h\x02."
    source = path.read_bytes()
    path.write_bytes(b"")
    with zipfile.ZipFile(_bytes_file(path, source)) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, pkl if info.filename.endswith("/data.pkl") else src.read(info))


def _bytes_file(path: Path, data: bytes) -> Path:
    copy = path.with_suffix(".orig")
    copy.write_bytes(data)
    return copy


def _self_index(path: Path) -> None:
    path.write_text(json.dumps({"weight_map": {"w": path.name}}))


def _index_pair(path: Path) -> None:
    other = path.with_name("other.index.json")
    path.write_text(json.dumps({"weight_map": {"w": other.name}}))
    other.write_text(json.dumps({"weight_map": {"w": path.name}}))


def _surrogate_safetensors(path: Path) -> None:
    header = json.dumps({SURROGATE: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)


def _protocol5(path: Path) -> None:
    torch.save({"w": torch.ones(2)}, path, pickle_protocol=5)


def _none_bomb(path: Path) -> None:
    torch.save({"w": torch.ones(2)}, path)
    source = _bytes_file(path, path.read_bytes())
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = b"\x80\x02" + b"N" * 20_000_000 + b"." if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)


CASES = {
    "self-containing state_dict": ("self.pt", _self_containing, "contains itself"),
    "state_dict nested 5,000 deep": ("deep.pt", _nested, "more than 100 levels deep"),
    "index naming itself": ("model.index.json", _self_index, "names itself as a shard"),
    "indexes naming each other": ("model.index.json", _index_pair, "names another index, 'other.index.json',"),
    "lone surrogate in safetensors": ("s.safetensors", _surrogate_safetensors, "'a\\ud800b.weight', which is not valid Unicode"),
    "deflated NONE bomb": ("bomb.pt", _none_bomb, "stack entries"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_gives_one_line(tmp_path: Path, case: str) -> None:
    name, writer, expected = CASES[case]
    path = tmp_path / name
    writer(path)
    done = _paramscope("inspect", path)
    lines = done.stderr.splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert str(path) in lines[0] and expected in lines[0], lines[0]
    for bad in ("Traceback", "weights_only", "unexpected error", "Warning"):
        assert bad not in done.stderr


@pytest.fixture(scope="module")
def surrogate_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("surrogate")
    torch.save({SURROGATE: torch.ones(2), "ok": torch.ones(2)}, folder / "a.pt")
    torch.save({SURROGATE: torch.zeros(2), "ok": torch.ones(2)}, folder / "b.pt")
    return folder / "a.pt", folder / "b.pt"


def test_lone_surrogate_names_print_escaped(surrogate_files: tuple[Path, Path]) -> None:
    a, b = surrogate_files
    for args in (("inspect", a), ("diff", a, b)):
        done = _paramscope(*args)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert "a\\ud800b.weight" in done.stdout
    done = _paramscope("inspect", "--json", a)
    assert done.returncode == 0, done.stderr
    names = [p["name"] for p in json.loads(done.stdout)["parameters"]]
    assert SURROGATE in names
    done = _paramscope("diff", "--json", a, b)
    assert done.returncode == 0 and json.loads(done.stdout)["changed"] == 1


def test_lone_surrogate_names_export(surrogate_files: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = surrogate_files
    done = _paramscope("export", a, "-o", tmp_path / "out.pt")
    assert done.returncode == 0, done.stderr
    assert SURROGATE in torch.load(tmp_path / "out.pt", weights_only=True)
    done = _paramscope("export", a, "-o", tmp_path / "out.safetensors")
    lines = done.stderr.splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "export to .pt instead" in lines[0], done.stderr
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KeyError("x"), "cannot be read (KeyError: 'x')"),
        (RecursionError("maximum recursion depth exceeded"), "nests too deeply or refers to itself; refusing to read it"),
        (MemoryError(), "needs more memory than is available to read it"),
    ],
)
def test_whatever_escapes_a_reader_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, expected: str
) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"w": torch.ones(2)}, str(path))

    def fail(*_args: object) -> None:
        raise error

    monkeypatch.setattr(readers, "read_safetensors", fail)
    with pytest.raises(SourceError) as info:
        open_source(str(path))
    assert str(info.value) == f"{path}: {expected}"


def test_a_protocol_5_state_dict_opens_without_torch_warnings(tmp_path: Path) -> None:
    """torch's weights-only loader refuses protocol 4/5 pickles (FRAME); a plain state_dict is
    built from the inert scan instead, and no warning of torch's reaches the user."""
    _protocol5(tmp_path / "p5.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opened = open_source(str(tmp_path / "p5.pt"))
    assert torch.equal(opened.model.w.detach(), torch.ones(2))
    assert [str(w.message) for w in caught] == []
