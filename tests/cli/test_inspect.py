"""``paramscope inspect``: text and JSON, and one-line errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch

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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_progress_while_statistics_are_read(tmp_path, monkeypatch, capsys):
    """Every tensor is read: a 15 GB model took a silent minute. On a terminal one line on stderr
    says how far it is, rewritten at most every 0.2 s, and wiped at the end."""
    from safetensors.torch import save_file

    from paramscope.cli import common

    save_file({f"layers.{i}.weight": torch.ones(3) for i in range(5000)}, str(tmp_path / "many.safetensors"))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(common, "PROGRESS_EVERY_S", 0.0)  # every update shown: there are some
    assert main(["inspect", str(tmp_path / "many.safetensors"), "--json"]) == 0
    written = terminal.getvalue()
    assert "100.0% done" in written and written.endswith("\r" + " " * 68 + "\r")  # the last write wipes the line
    assert "building the module tree" in written  # the open says how far it is too (a million tensors: 30 s)
    json.loads(capsys.readouterr().out)  # stdout stays the JSON alone
    monkeypatch.setattr(common, "PROGRESS_EVERY_S", 3600.0)  # the first update only
    terminal.seek(0)
    terminal.truncate()
    assert main(["inspect", str(tmp_path / "many.safetensors"), "--json"]) == 0
    assert terminal.getvalue().count("%") == 2  # the open's first update, then the statistics'
    json.loads(capsys.readouterr().out)  # stdout stays the JSON alone
