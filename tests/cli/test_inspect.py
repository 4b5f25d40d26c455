"""``paramscope inspect``: text and JSON, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from paramscope.cli import main


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["inspect", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_json_has_the_spec_fields(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, "demo:mlp")
    first = data["parameters"][0]
    assert first["name"] == "0.weight" and first["shape"] == [3, 4] and first["numel"] == 12
    assert set(first["stats"]) >= {"mean", "std", "min", "max", "norm", "nan", "inf"}
    assert first["aliases"] == ["0.weight"] and first["requires_grad"] is True
    assert data["total_params"] == data["unique_params"] == 19
    assert data["tied_groups"] == [] and data["unregistered"] == []


def test_inspect_shared_and_unregistered(capsys: pytest.CaptureFixture[str]) -> None:
    shared = _json(capsys, "demo:shared")
    assert shared["tied_groups"] == [["0.weight", "1.weight"]]
    assert (shared["total_params"], shared["unique_params"]) == (2, 1)
    unregistered = _json(capsys, "demo:unregistered")
    assert [(u["module"], u["attribute"]) for u in unregistered["unregistered"]] == [("", "weight2")]


def test_inspect_text_reads_like_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "demo:tiny_lm"]) == 0
    out = capsys.readouterr().out
    assert "embed.weight = head.weight" in out
    assert "Embedding(100, 32)" in out
    assert "Unique params" in out


@pytest.mark.parametrize("command", ["inspect", "audit"])
def test_text_columns_show_statistics_past_float64s_range(
    command: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The entries hold an Inf norm as "inf" (JSON-ready): the text table failed with
    "unexpected error: TypeError: bad operand type for abs(): 'str'"."""
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "edge.safetensors"
    save_file({"w": torch.tensor([1.5e308, 1.5e308], dtype=torch.float64), "v": torch.ones(2)}, str(path))
    assert main([command, str(path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  w "))
    numbers = " ".join(["1.500e+308", "0.0000", "1.500e+308", "1.500e+308", "inf"])  # mean std min max norm
    assert numbers in " ".join(row.split())


def test_bad_source_is_one_line_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "paramscope", "inspect", "demo:nope"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "demo:nope" in result.stderr
