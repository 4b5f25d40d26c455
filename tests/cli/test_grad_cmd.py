"""``paramscope grad``: the tutorial's numbers in JSON and text, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from paramscope.cli import main


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["grad", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_shared_constant_3_gives_output_9_grad_6_parts_3_and_3(capsys):
    data = _json(capsys, "demo:shared", "--init", "*=constant(val=3)", "--input", "ones(1,1)")
    assert data["output"]["value"] == 9.0
    assert data["loss"] == 9.0
    (weight,) = data["parameters"]
    assert weight["name"] == "0.weight" and weight["aliases"] == ["0.weight", "1.weight"]
    assert weight["grad"]["value"] == 6.0 and weight["grad"]["norm"] == 6.0
    assert [(p["module"], p["stats"]["mean"]) for p in weight["parts"]] == [("0", 3.0), ("1", 3.0)]


def test_mlp_json_has_shape_and_stats_for_a_multi_element_output(capsys):
    data = _json(capsys, "demo:mlp")
    assert data["inputs"] == "rand(2, 4)"
    assert data["output"]["shape"] == [2, 1] and "value" not in data["output"]
    assert set(data["output"]["stats"]) >= {"mean", "std", "min", "max"}
    names = [p["name"] for p in data["parameters"]]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for p in data["parameters"]:
        assert set(p["grad"]) >= {"norm", "mean", "max_abs", "grad_to_weight", "zero_fraction", "nan", "inf"}
        assert "parts" not in p
    # the loss is the tutorial's net(X).sum() for X = torch.rand(2, 4) after manual_seed(0)
    from paramscope.core.sources.demos import build_demo

    net = build_demo("mlp")
    torch.manual_seed(0)
    with torch.no_grad():
        assert data["loss"] == pytest.approx(float(net(torch.rand(2, 4)).sum()), rel=1e-6)


def test_unused_parameter_has_null_grad_and_a_diagnostic(tmp_path, capsys):
    source = tmp_path / "models.py"
    source.write_text(
        "import torch\n"
        "class Partly(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.used = torch.nn.Linear(2, 1)\n"
        "        self.spare = torch.nn.Linear(2, 1)\n"
        "    def forward(self, x):\n"
        "        return self.used(x)\n"
    )
    data = _json(capsys, f"{source}:Partly", "--input", "rand(3, 2)")
    grads = {p["name"]: p["grad"] for p in data["parameters"]}
    assert grads["spare.weight"] is None and grads["used.weight"] is not None
    assert any(d["kind"] == "no_grad" and d["names"] == ["spare.weight"] for d in data["diagnostics"])


def test_init_rules_and_losses_change_the_numbers(capsys):
    data = _json(capsys, "demo:mlp", "--init", "*.weight=constant(val=1)", "--init", "*.bias=zeros", "--input", "ones(1,4)", "--loss", "l2")
    # all ones: hidden = 4 per unit, output = 12, loss = 144
    assert data["output"]["value"] == 12.0 and data["loss"] == 144.0
    assert data["loss_name"] == "l2"


def test_init_skips_the_tensors_an_initializer_cannot_take_as_init_does(capsys):
    """``--init '*=orthogonal_'`` refused the whole rule for the 1-D biases, where ``init`` skips
    them and says which."""
    data = _json(capsys, "demo:mlp", "--init", "*=orthogonal_", "--input", "ones(1,4)")
    assert data["notes"][0] == "--init skipped 2 refused tensor(s): 0.bias, 2.bias"
    assert main(["grad", "demo:mlp", "--init", "*.bias=orthogonal_", "--input", "ones(1,4)"]) == 2
    assert "nothing applied, refused for 0.bias" in capsys.readouterr().err


def test_text_output_reads_like_the_tutorial(capsys):
    assert main(["grad", "demo:shared", "--init", "*=constant(val=3)", "--input", "ones(1,1)"]) == 0
    out = capsys.readouterr().out
    assert "Output: 9.0" in out and "Loss (sum): 9.0" in out
    assert "part from 0: 3.0" in out and "part from 1: 3.0" in out and "6.0 = 3.0 + 3.0" in out


def test_tiny_lm_parts_name_the_embedding_and_the_head(capsys):
    data = _json(capsys, "demo:tiny_lm", "--loss", "cross_entropy")
    embed = next(p for p in data["parameters"] if p["name"] == "embed.weight")
    assert [p["module"] for p in embed["parts"]] == ["embed", "head"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["demo:mlp", "--input", "rand(2,5)"], "forward failed in 0 (Linear)"),
        (["demo:mlp", "--input", "rand(2,"], "input spec"),
        (["demo:mlp", "--loss", "hinge"], "unknown loss 'hinge'"),
        (["demo:mlp", "--loss", "cross_entropy"], "cross_entropy needs at least 2 classes"),
        (["demo:nope"], "unknown demo"),
    ],
)
def test_errors_are_one_line_with_status_2(capsys, args, fragment):
    assert main(["grad", *args]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_state_dict_source_says_backward_is_unavailable(tmp_path, capsys):
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    assert main(["grad", str(path)]) == 2
    err = capsys.readouterr().err
    assert "backward unavailable" in err and str(path) in err


def test_help_runs_in_a_fresh_process():
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "grad", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "--input" in done.stdout and "cross_entropy" in done.stdout
