"""Saved state_dicts of quantized, parametrized and sparse models: nothing dropped, counts as torch's."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from paramscope.core.model.report import build_report
from paramscope.core.sources.diff import diff_sources, diff_state_dicts
from paramscope.core.sources.sources import open_source


def _quantized(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear}, dtype=torch.qint8)


def test_quantized_weights_are_kept_and_diffed(tmp_path: Path) -> None:
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"q{seed}.pt"
        torch.save(_quantized(seed).state_dict(), path)
        paths.append(path)
    opened = open_source(str(paths[0]))
    report = build_report(opened.model)
    assert report.total_params == sum(p.numel() for p in _quantized(0).parameters()) == 0
    packed = opened.model.get_buffer("0._packed_params._packed_params.0")
    assert packed.dtype == torch.qint8
    assert torch.equal(packed.int_repr(), _quantized(0)[0].weight().int_repr())
    result = diff_sources(str(paths[0]), str(paths[1]))
    assert not result.identical
    assert "0._packed_params._packed_params.0" in [d.name for d in result.changed]


def test_diff_of_two_live_quantized_models(tmp_path: Path) -> None:
    source = tmp_path / "qmodels.py"
    source.write_text(
        "import warnings, torch\nfrom torch import nn\n"
        "def make(seed):\n    torch.manual_seed(seed)\n    with warnings.catch_warnings():\n"
        "        warnings.simplefilter('ignore')\n"
        "        return torch.ao.quantization.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)), {nn.Linear}, dtype=torch.qint8)\n"
        "def a():\n    return make(0)\ndef b():\n    return make(1)\n"
    )
    result = diff_sources(f"{source}:a", f"{source}:b")
    assert not result.identical


def test_a_saved_orthogonal_parametrization_counts_as_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(parametrizations.orthogonal(nn.Linear(6, 6)), nn.Linear(6, 2))
    path = tmp_path / "ortho.pt"
    torch.save(model.state_dict(), path)
    report = build_report(open_source(str(path)).model)
    assert report.total_params == sum(p.numel() for p in model.parameters())


def test_sparse_tensors_diff_as_dense() -> None:
    dense = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    other = dense.clone()
    other[1, 0] = 3.0
    for layout in ("coo", "csr"):
        a = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
        b = other.to_sparse() if layout == "coo" else other.to_sparse_csr()
        result = diff_state_dicts({"w": a}, {"w": b})
        assert result.changed[0].max_abs == pytest.approx(1.0)


def test_weights_into_a_lazy_layer_materialize_it_as_load_state_dict_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 1))
    weights = tmp_path / "w.pt"
    torch.save(trained.state_dict(), weights)
    source = tmp_path / "lazy_model.py"
    source.write_text("from torch import nn\ndef lazy():\n    return nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.Linear(3, 1))\n")
    opened = open_source(f"{source}:lazy", weights=str(weights))
    reference = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.Linear(3, 1))
    reference.load_state_dict(trained.state_dict())
    x = torch.ones(2, 5)
    assert torch.equal(opened.model(x), reference(x))
    assert torch.equal(opened.model(x), trained(x))
