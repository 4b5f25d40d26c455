"""``paramscope inspect`` on checkpoints with hostile shapes: very deep names, many tensors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from paramscope.cli import main
from paramscope.core.files.module_tree import MAX_DEPTH


def test_a_2000_level_name_is_inspected_not_a_recursion_error(tmp_path: Path) -> None:
    deep = "a." * 2000 + "weight"
    path = tmp_path / "deep.safetensors"
    save_file({deep: torch.arange(3.0), "b.weight": torch.ones(2)}, str(path))
    result = subprocess.run(
        [sys.executable, "-m", "paramscope", "inspect", str(path), "--json"],
        capture_output=True,
        text=True,
    )
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    names = {p["name"]: p for p in data["parameters"]}
    assert set(names) == {deep, "b.weight"}  # the full name survives
    assert names[deep]["stats"]["max"] == 2.0
    assert len(data["modules"]) == 1 + MAX_DEPTH + 1  # root, the a's kept as modules, b


def test_a_deep_name_exports_under_its_full_name(tmp_path: Path, capsys) -> None:
    deep = "x." * 1500 + "bias"
    source, out = tmp_path / "deep.safetensors", tmp_path / "out.safetensors"
    save_file({deep: torch.ones(2)}, str(source))
    assert main(["export", str(source), "-o", str(out)]) == 0
    from safetensors.torch import load_file

    assert list(load_file(str(out))) == [deep]
