"""compare-init: schemes run on the same input, the model and its gradients restored after each."""

from __future__ import annotations

import json

import pytest
import torch

from paramscope.cli import main
from paramscope.core.backward.backward import run_backward
from paramscope.core.backward.input_specs import parse_input_spec
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.compare import compare_schemes
from paramscope.core.sources.sources import open_source


def test_schemes_differ_on_the_signal_and_the_model_is_restored():
    session = Session(open_source("demo:deep_mlp"))
    before = {n: t.clone() for n, t in session.model.state_dict().items()}
    marker = torch.full_like(session.model[0].weight, 7.0)
    session.model[0].weight.grad = marker
    spec = parse_input_spec("randn(128,64)")
    comparison = compare_schemes(session, ["current", "*.weight=normal(std=0.01)", "lsuv"], spec, seed=0)
    assert [s.name for s in comparison.schemes] == ["current", "*.weight=normal(std=0.01)", "lsuv"]
    assert all(torch.equal(session.model.state_dict()[n], t) for n, t in before.items())
    assert session.model[0].weight.grad is marker and session.model[2].weight.grad is None
    assert not session.stack.history  # nothing entered the undo history
    current, small, lsuv = comparison.schemes
    linear = [p for p in lsuv.points if p.type_name == "Linear"]
    assert len(linear) == 20 and all(0.85 < p.activation_std < 1.15 for p in linear)
    tiny = [p for p in small.points if p.type_name == "Linear"]
    assert tiny[0].gradient_std < 1e-12 < linear[0].gradient_std  # normal(0.01): the gradient vanishes
    assert [p.module for p in current.points] == [str(i) for i in range(39)]


def test_current_scheme_is_the_plain_signal():
    session = Session(open_source("demo:mlp"))
    comparison = compare_schemes(session, ["current"], parse_input_spec("rand(8,4)"), seed=3)
    direct = run_backward(session.model, "rand(8,4)", seed=3, record_parts=False).signal
    assert [p.activation_std for p in comparison.schemes[0].points] == [p.activation_std for p in direct]
    assert [p.gradient_std for p in comparison.schemes[0].points] == [p.gradient_std for p in direct]


def test_unknown_scheme_fails_before_anything_runs():
    session = Session(open_source("demo:mlp"))
    with pytest.raises(ParamscopeError, match="unknown scheme 'gtp2'"):
        compare_schemes(session, ["current", "gtp2"], parse_input_spec("rand(8,4)"))


def test_a_failing_forward_still_restores_the_weights():
    session = Session(open_source("demo:mlp"))
    before = session.model[0].weight.detach().clone()
    with pytest.raises(ParamscopeError):
        compare_schemes(session, ["*.weight=zeros"], parse_input_spec("rand(8,5)"))  # wrong width
    assert torch.equal(session.model[0].weight, before)


def test_cli_json_text_and_csv(capsys):
    argv = ["compare-init", "demo:tiny_lm", "--scheme", "current", "gpt2", "--input", "randint(2,8,high=100)"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [s["scheme"] for s in data["schemes"]] == ["current", "gpt2"]
    assert data["layers"][0] == {"index": 0, "module": "embed", "type": "Embedding"}
    assert data["schemes"][1]["signal"][0]["activation_std"] == pytest.approx(0.02, rel=0.2)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "[2] gpt2" in text and "embed (Embedding)" in text and "[2] grad" in text
    assert main([*argv, "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("index,module,type,current activation_std") and lines[1].startswith("0,embed,Embedding,")
