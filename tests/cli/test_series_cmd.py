"""``paramscope series``: a glob, a folder or a list; --json and the text table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from paramscope.cli import main


def _save_run(tmp_path: Path) -> None:
    for step in (5, 50, 15):
        torch.save({"fc.weight": torch.full((3, 2), float(step)), "fc.bias": torch.ones(3)}, tmp_path / f"ckpt_step{step}.pt")


def test_json_gives_the_table_in_step_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _save_run(tmp_path)
    assert main(["series", str(tmp_path / "ckpt_step*.pt"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["step"] for c in data["checkpoints"]] == [5, 15, 50]
    weight = next(t for t in data["tensors"] if t["name"] == "fc.weight")
    assert weight["shape"] == [3, 2]
    assert [s["max_abs"] for s in weight["steps"]] == [5.0, 15.0, 50.0]
    assert weight["steps"][1]["rel_prev"] == pytest.approx(2.0)
    assert weight["steps"][2]["rel_first"] == pytest.approx(9.0)
    assert [m["name"] for m in data["modules"]] == ["fc"]


def test_text_table_and_a_list_of_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _save_run(tmp_path)
    files = [str(tmp_path / f"ckpt_step{s}.pt") for s in (50, 5)]
    assert main(["series", *files]) == 0
    out = capsys.readouterr().out
    assert out.index("step 5 ") < out.index("step 50")
    assert "fc.weight [3, 2] float32" in out and "Δprev" in out


def test_too_few_checkpoints_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _save_run(tmp_path)
    assert main(["series", str(tmp_path / "ckpt_step5.pt")]) == 2
    assert "two checkpoints or more" in capsys.readouterr().err


@pytest.mark.slow
def test_on_a_local_cluster_the_numbers_are_bit_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    w = torch.randn(700, 900, generator=g)  # sums over 630,000 values: the order shows in the last bits
    for step in (100, 200, 300, 400):
        w = w + 0.01 * torch.randn(w.shape, generator=g)
        tensors = {f"blocks.{i}.weight": (w * (i + 1)).to(torch.bfloat16 if i % 2 else torch.float32) for i in range(5)}
        tensors["blocks.0.bias"] = torch.tensor([float(step), float("nan") if step == 300 else 0.0])
        if step >= 200:
            tensors["head.weight"] = torch.full((3, 3), step / 100)  # appears later
        save_file(tensors, str(tmp_path / f"step-{step}.safetensors"))
    spec = str(tmp_path / "step-*.safetensors")
    assert main(["series", spec, "--json"]) == 0
    here = json.loads(capsys.readouterr().out)
    assert main(["series", spec, "--json", "--scheduler", "local:2"]) == 0
    there = json.loads(capsys.readouterr().out)
    assert there == here  # every number of every tensor and module, exactly
    assert [t["name"] for t in here["tensors"]][:2] == ["blocks.0.bias", "blocks.0.weight"]
    assert here["tensors"][0]["steps"][2]["nan"] == 1
