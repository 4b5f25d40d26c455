"""``paramscope diff A B [--json]``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paramscope.cli import main
from paramscope.core.sources.demos import build_demo


def test_diff_json_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changed = build_demo("mlp")
    with torch.no_grad():
        changed[0].weight[0, 0] += 0.5
    path = tmp_path / "changed.safetensors"
    assert main(["export", "demo:mlp", "-o", str(tmp_path / "same.pt")]) == 0
    from paramscope.core.files.export import export_model

    export_model(changed, path)
    capsys.readouterr()
    assert main(["diff", "demo:mlp", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {t["name"]: t for t in data["tensors"]}
    assert data["changed"] == 1
    weight = by_name["0.weight"]
    assert weight["max_abs_diff"] == pytest.approx(0.5, abs=1e-6)
    original = build_demo("mlp")[0].weight.detach().double()
    assert weight["rel_change"] == pytest.approx(0.5 / float(original.norm()), rel=1e-6)
    assert sum(weight["histogram"]["counts"]) == 12
    assert main(["diff", "demo:mlp", str(tmp_path / "same.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["identical"] is True


def test_diff_text_lists_sides(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "demo:mlp", "demo:cnn"]) == 0
    out = capsys.readouterr().out
    assert "only in demo:mlp: 0.weight" in out and "only in demo:cnn: features.0.weight" in out


def test_diff_bad_file_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "empty.safetensors"
    bad.write_bytes(b"")
    assert main(["diff", "demo:mlp", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is empty" in err and str(bad) in err
