"""``paramscope export``: writes verified files; bad files and targets give one line, exit 2."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from paramscope.cli import main
from paramscope.core.sources.demos import build_demo


def test_export_safetensors_and_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lm.safetensors"
    assert main(["export", "demo:tiny_lm", "-o", str(out)]) == 0
    assert "1 tied name(s) kept" in capsys.readouterr().out
    model = build_demo("tiny_lm", seed=4)
    safetensors.torch.load_model(model, str(out))
    assert torch.equal(model.embed.weight, build_demo("tiny_lm").embed.weight)
    sub = tmp_path / "norm.pt"
    assert main(["export", "demo:tiny_lm", "-o", str(sub), "--module", "norm"]) == 0
    assert sorted(torch.load(sub, weights_only=True)) == ["bias", "weight"]


def test_export_from_file_with_weights(tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    torch.save(build_demo("mlp", seed=5).state_dict(), weights)
    out = tmp_path / "out.safetensors"
    assert main(["export", "demo:mlp", "--weights", str(weights), "-o", str(out)]) == 0
    got = safetensors.torch.load_file(str(out))
    assert torch.equal(got["0.weight"], build_demo("mlp", seed=5)[0].weight)


def _bad_files(folder: Path) -> list[Path]:
    files = {
        "empty.pt": b"",
        "random.bin": os.urandom(500),
        "pointer.safetensors": b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n",
        "lying.safetensors": struct.pack("<Q", 60) + json.dumps({"w": {"dtype": "F32", "shape": [100], "data_offsets": [0, 400]}}).encode().ljust(60) + b"\0" * 8,
    }
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    whole = folder / "whole.pt"
    torch.save(build_demo("mlp"), whole)
    index = folder / "model.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "gone.safetensors"}}))
    return [*paths, whole, index, folder]


def test_bad_sources_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "x.pt"
    out.parent.mkdir()
    for path in _bad_files(tmp_path):
        assert main(["export", str(path), "-o", str(out)]) == 2, path
        err = capsys.readouterr().err.strip()
        assert err.startswith("paramscope: ") and "\n" not in err
        assert str(path) in err and "Traceback" not in err and "weights_only" not in err
        assert not out.exists()


def test_bad_target_leaves_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "keep.pt"
    target.write_bytes(b"old")
    assert main(["export", "demo:mlp", "-o", str(tmp_path / "x.txt")]) == 2
    assert "unknown export format" in capsys.readouterr().err
    assert main(["export", "demo:mlp", "-o", str(target), "--module", "nope"]) == 2
    assert target.read_bytes() == b"old"


def test_trust_flag_opens_pickled_module(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(build_demo("mlp"), whole)
    out = tmp_path / "sd.pt"
    assert main(["export", str(whole), "--trust", "-o", str(out)]) == 0
    assert sorted(torch.load(out, weights_only=True)) == ["0.bias", "0.weight", "2.bias", "2.weight"]


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "random.pt"
    bad.write_bytes(os.urandom(300))
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "export", str(bad), "-o", str(tmp_path / "o.pt")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and str(bad) in done.stderr


@pytest.mark.parametrize("command", ["export", "init"])
def test_sync_waits_for_the_disk_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    from paramscope.core.files import atomic

    synced: list[Path] = []
    real = atomic._fsync_file
    monkeypatch.setattr(atomic, "_fsync_file", lambda tmp: (synced.append(tmp), real(tmp)))
    out = tmp_path / "m.safetensors"
    rules = ["--rule", "*.bias=zeros"] if command == "init" else []
    assert main([command, "demo:mlp", *rules, "-o", str(out)]) == 0
    assert synced == []
    assert main([command, "demo:mlp", *rules, "-o", str(out), "--sync"]) == 0
    assert len(synced) == 1 and synced[0].parent == tmp_path and synced[0] != out
    if command == "export":
        assert capsys.readouterr().out.strip().endswith("on disk (synced)")
    assert sorted(safetensors.torch.load_file(str(out))) == sorted(build_demo("mlp").state_dict())
