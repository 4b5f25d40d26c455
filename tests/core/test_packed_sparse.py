"""Nothing silently dropped: packed quantized weights, parametrizations, sparse tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from paramscope.core.files.export import ExportError, export_model
from paramscope.core.model.inspection import inspect_model
from paramscope.core.model.report import build_report

pytestmark = pytest.mark.filterwarnings(
    "ignore:torch.ao.quantization is deprecated:DeprecationWarning",
    "ignore:torch.quantize_per_tensor:UserWarning",
    "ignore:Sparse CSR tensor support is in beta:UserWarning",
)


def _quantized() -> nn.Module:
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    return torch.ao.quantization.quantize_dynamic(float_model, {nn.Linear}, dtype=torch.qint8)


def test_packed_int8_weights_are_shown_with_scale_and_zero_point() -> None:
    model = _quantized()
    data = inspect_model(model)
    assert data["unique_params"] == sum(p.numel() for p in model.parameters()) == 0
    packed = [u for u in data["unregistered"] if u["kind"] == "packed weights"]
    assert [(u["module"], u["shape"], u["dtype"]) for u in packed] == [
        ("0._packed_params", [3, 4], "qint8"),
        ("2._packed_params", [2, 3], "qint8"),
    ]
    weight = model[0].weight()
    values = weight.int_repr()
    assert (
        f"int values {int(values.min())}..{int(values.max())}, scale {weight.q_scale():.6g}, "
        f"zero point {weight.q_zero_point()}"
    ) in packed[0]["message"]


def test_packed_weights_are_refused_by_export_in_one_line(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"^0\._packed_params\._packed_params: packed quantized weights") as info:
        export_model(_quantized(), tmp_path / "q.pt")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "q.pt").exists()


@pytest.mark.parametrize("to_layout", [torch.Tensor.to_sparse, torch.Tensor.to_sparse_csr])
def test_sparse_buffers_are_refused_by_export_in_one_line(tmp_path, to_layout) -> None:
    model = nn.Linear(3, 3)
    model.register_buffer("mask", to_layout(torch.eye(3)))
    for name in ("m.pt", "m.safetensors"):
        with pytest.raises(ExportError, match=r"^mask: a sparse_(coo|csr) tensor cannot be exported"):
            export_model(model, tmp_path / name)
        assert not (tmp_path / name).exists()


def test_a_parametrization_counts_as_torch_counts() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 6))
    orthogonal(model[0])
    report = build_report(model)
    assert report.unique_params == sum(p.numel() for p in model.parameters()) == 126
    assert "0.parametrizations.weight.0.base" in report.buffers
    assert "0.parametrizations.weight.0.base" not in report.parameters
