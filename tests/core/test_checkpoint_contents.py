"""Training checkpoints: the weight set chosen, other weight sets named, optimizer state summarized."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from paramscope.core.errors import SourceError
from paramscope.core.files.optimizer_state import summarize_optimizer
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import open_source


def _trained(optimizer_class: type, steps: int = 2, **kwargs: object) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A small model with BatchNorm (buffers between parameters) after a few real steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    optimizer = optimizer_class(model.parameters(), lr=0.01, **kwargs)
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
    return model, optimizer


def _ema(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() * 0.5 if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}


def _expected_states(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[tuple[str, str], torch.Tensor]:
    """``(parameter name, state key) -> tensor`` straight from the live optimizer."""
    out = {}
    for name, p in model.named_parameters():
        for key, value in optimizer.state[p].items():
            if value.dim() > 0:
                out[(name, key)] = value
    return out


@pytest.mark.parametrize(
    ("optimizer_class", "kwargs", "kind", "keys"),
    [
        (torch.optim.Adam, {}, "Adam", {"exp_avg", "exp_avg_sq"}),
        (torch.optim.AdamW, {}, "AdamW", {"exp_avg", "exp_avg_sq"}),
        (torch.optim.SGD, {"momentum": 0.9}, "SGD with momentum", {"momentum_buffer"}),
    ],
)
def test_optimizer_state_is_named_after_the_parameters(
    tmp_path: Path, optimizer_class: type, kwargs: dict, kind: str, keys: set[str]
) -> None:
    model, optimizer = _trained(optimizer_class, **kwargs)
    path = tmp_path / "ck.pt"
    torch.save({"epoch": 4, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    opened = open_source(str(path))
    [summary] = opened.optimizers
    assert (summary.kind, summary.entry, summary.mapped) == (kind, "optimizer", True)
    assert [g["lr"] for g in summary.groups] == [0.01]
    expected = _expected_states(model, optimizer)
    got = {(s.name, s.key): s for s in summary.stats}
    assert set(got) == set(expected) and {k for _, k in got} == keys
    for (name, key), tensor in expected.items():
        s = got[(name, key)]
        assert s.shape == tuple(tensor.shape)
        assert s.mean == pytest.approx(tensor.double().mean().item(), rel=1e-9, abs=1e-15)
        assert s.max == pytest.approx(tensor.max().item()) and s.min == pytest.approx(tensor.min().item())
        assert s.norm == pytest.approx(tensor.double().norm().item(), rel=1e-9)
        if tensor.numel() > 1:  # the sample standard deviation, as torch.std
            assert s.std == pytest.approx(tensor.double().std().item(), rel=1e-6, abs=1e-15)
    assert any("model.parameters() order" in n for n in opened.notes)


def test_a_frozen_layer_left_out_of_the_optimizer_is_shown_by_index(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 3))
    optimizer = torch.optim.Adam(model[1].parameters(), lr=0.1)  # 2 of the 4 parameters
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    path = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    opened = open_source(str(path))
    [summary] = opened.optimizers
    assert not summary.mapped and all(s.name is None for s in summary.stats)
    assert sorted({s.index for s in summary.stats}) == [0, 1]
    assert any("2 parameters in the optimizer, 4 in the model" in n for n in opened.notes)


def test_same_count_but_other_shapes_is_not_mapped(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    params = list(model.parameters())
    optimizer = torch.optim.SGD([params[2], params[3], params[0], params[1]], lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    path = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, path)
    opened = open_source(str(path))
    assert not opened.optimizers[0].mapped
    assert any("shown by the optimizer's index" in n for n in opened.notes)


def test_summary_of_a_plain_sgd_and_the_step_count() -> None:
    model, optimizer = _trained(torch.optim.SGD)
    summary = summarize_optimizer(optimizer.state_dict())
    assert summary.kind == "SGD" and summary.stats == []
    _, adam = _trained(torch.optim.Adam, steps=3)
    assert summarize_optimizer(adam.state_dict()).step == 3.0


def test_several_weight_sets_pick_one_with_entry(tmp_path: Path) -> None:
    model, optimizer = _trained(torch.optim.Adam)
    ema = _ema(model)
    path = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "ema": ema, "optimizer": optimizer.state_dict(), "step": 9}, path)
    default = open_source(str(path))
    assert (default.entry, default.entries) == ("model", ["model", "ema"])
    assert torch.equal(default.model.get_parameter("0.weight").detach(), model[0].weight.detach())
    assert any("also holds weights in 'ema' (open one with --entry ema)" in n for n in default.notes)
    chosen = open_source(str(path), entry="ema")
    assert chosen.entry == "ema"
    for name, value in ema.items():
        assert torch.equal(chosen.model.state_dict()[name], value)
    assert any("'model'" in n and "--entry model" in n for n in chosen.notes)
    assert chosen.optimizers[0].mapped  # the ema has the model's parameters


def test_an_unknown_entry_is_one_line_naming_the_entries(tmp_path: Path) -> None:
    model, _ = _trained(torch.optim.SGD)
    path = tmp_path / "ck.pt"
    torch.save({"model": model.state_dict(), "model_ema": _ema(model)}, path)
    with pytest.raises(SourceError) as caught:
        open_source(str(path), entry="emma")
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "'emma'" in message and "model, model_ema" in message


@pytest.mark.parametrize("kind", ["state_dict", "safetensors", "demo"])
def test_entry_where_there_is_no_choice_is_refused(tmp_path: Path, kind: str) -> None:
    mlp = build_demo("mlp")
    path = tmp_path / "w.bin"
    if kind == "safetensors":
        save_file(dict(mlp.state_dict()), str(path))
    else:
        torch.save(mlp.state_dict(), path)
    spec = "demo:mlp" if kind == "demo" else str(path)
    with pytest.raises(SourceError, match="--entry ema") as caught:
        open_source(spec, entry="ema")
    assert "\n" not in str(caught.value)


def test_weights_entry_and_the_optimizer_of_a_weights_file(tmp_path: Path) -> None:
    mlp = build_demo("mlp")
    optimizer = torch.optim.Adam(mlp.parameters(), lr=0.5)
    mlp(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    ema = _ema(mlp)
    path = tmp_path / "ck.pt"
    torch.save({"epoch": 2, "model": mlp.state_dict(), "ema": ema, "optimizer": optimizer.state_dict()}, path)
    opened = open_source("demo:mlp", weights=str(path), weights_entry="ema")
    for name, value in ema.items():
        assert torch.equal(opened.model.state_dict()[name], value)
    assert opened.extras["epoch"] == 2
    [summary] = opened.optimizers
    assert summary.mapped and {s.name for s in summary.stats} == {n for n, _ in mlp.named_parameters()}
    assert any("ck.pt: weights taken from the 'ema' entry" in n for n in opened.notes)


def test_a_bare_optimizer_state_is_named_not_opened(tmp_path: Path) -> None:
    _, optimizer = _trained(torch.optim.Adam)
    path = tmp_path / "optimizer.pt"
    torch.save(optimizer.state_dict(), path)
    with pytest.raises(SourceError) as caught:
        open_source(str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "is an optimizer state (6 parameter states, Adam-like: exp_avg, exp_avg_sq), not model weights" in message
    with pytest.raises(SourceError, match="is an optimizer state"):
        open_source("demo:mlp", weights=str(path))
