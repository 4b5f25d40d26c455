"""Load weights: a report first (ties understood), then one undoable command, strict or partial."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model

from paramscope.core.edit.load_weights import apply_weights
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.files.weights_fit import compare_weights
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import OpenedModel
from paramscope.core.sources.weights import WeightsInputs, read_weights, run_read_weights


def _session(demo: str, seed: int = 0) -> Session:
    return Session(OpenedModel(build_demo(demo, seed=seed), f"demo:{demo}", "demo"))


def test_missing_alias_of_a_tied_tensor_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "lm.safetensors"
    save_model(build_demo("tiny_lm", seed=1), str(path))
    tensors = read_weights(path)
    del tensors["head.weight"]  # only the embedding's name is left
    report = compare_weights(build_demo("tiny_lm"), tensors)
    assert report.fits
    assert report.missing == [] and report.unexpected == []
    assert "head.weight" in report.tied_satisfied


def test_report_lists_missing_unexpected_mismatched_and_converted() -> None:
    model = build_demo("mlp")
    tensors = dict(build_demo("mlp", seed=1).state_dict())
    del tensors["2.bias"]
    tensors["0.weight"] = torch.zeros(5, 4)
    tensors["0.bias"] = tensors["0.bias"].double()
    tensors["extra.weight"] = torch.ones(1)
    tensors["2.weight"] = torch.ones(1, 3, dtype=torch.int64)
    report = compare_weights(model, tensors)
    assert report.missing == ["2.bias"]
    assert report.unexpected == ["extra.weight"]
    assert {m.name for m in report.mismatched} == {"0.weight", "2.weight"}
    assert "shape [3, 4] in the model, [5, 4] in the file" in report.mismatched[0].reason
    assert [c.name for c in report.converted] == ["0.bias"]
    assert not report.fits
    assert report.summary() == "1 matching, 1 missing, 1 unexpected, 2 mismatched, 1 converted to the model's dtype"


def test_strict_apply_refuses_and_changes_nothing() -> None:
    session = _session("mlp")
    before = {k: v.clone() for k, v in session.model.state_dict().items()}
    tensors = dict(build_demo("mlp", seed=1).state_dict())
    del tensors["2.bias"]
    with pytest.raises(ParamscopeError, match="1 missing") as info:
        apply_weights(session, tensors, strict=True, where="w.pt")
    assert "\n" not in str(info.value)
    for name, value in session.model.state_dict().items():
        assert torch.equal(value, before[name])
    assert not session.stack.can_undo


def test_partial_apply_is_one_undoable_command() -> None:
    session = _session("mlp")
    before = {k: v.clone() for k, v in session.model.state_dict().items()}
    other = dict(build_demo("mlp", seed=1).state_dict())
    tensors = {k: v for k, v in other.items() if k != "2.bias"}
    report = apply_weights(session, tensors, strict=False, where="w.pt")
    assert report.missing == ["2.bias"]
    state = session.model.state_dict()
    for name in tensors:
        assert torch.equal(state[name], other[name])
    assert torch.equal(state["2.bias"], before["2.bias"])
    assert session.modified and "partial" in session.stack.undo_text
    session.undo()
    for name, value in session.model.state_dict().items():
        assert torch.equal(value, before[name])
    session.redo()
    assert torch.equal(session.model.state_dict()["0.weight"], other["0.weight"])


def test_tied_model_loads_through_one_name_and_stays_tied() -> None:
    session = _session("tiny_lm")
    other = dict(build_demo("tiny_lm", seed=7).state_dict())
    other.pop("head.weight")
    apply_weights(session, other, strict=True)
    model = session.model
    assert model.head.weight is model.embed.weight
    assert torch.equal(model.head.weight, other["embed.weight"])


def test_dtype_conversion_applies_cast() -> None:
    session = _session("mlp")
    other = {k: v.double() for k, v in build_demo("mlp", seed=2).state_dict().items()}
    report = apply_weights(session, other, strict=True)
    assert len(report.converted) == 4
    assert session.model.state_dict()["0.weight"].dtype == torch.float32
    assert torch.allclose(session.model.state_dict()["0.weight"].double(), other["0.weight"])


def test_run_read_weights_from_a_file_and_from_a_source(tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.save(build_demo("cnn", seed=3).state_dict(), path)
    tensors, report = run_read_weights(WeightsInputs(str(path), build_demo("cnn")))
    assert report.fits and len(report.matched) == 16
    tensors, report = run_read_weights(WeightsInputs("demo:mlp", build_demo("cnn")))
    assert len(report.missing) == 16 and len(report.unexpected) == 4
