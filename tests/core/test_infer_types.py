"""A checkpoint without code shows what its containers probably were, from names and shapes."""

from __future__ import annotations

import safetensors.torch
import torch
from torch import nn

from paramscope.core.files import infer_types
from paramscope.core.files.infer_types import infer_type, kind_of
from paramscope.core.model import report as report_module
from paramscope.core.model.inspection import report_to_dict
from paramscope.core.model.report import build_report
from paramscope.core.sources.sources import open_source


def _inferred(path) -> dict[str, str | None]:
    opened = open_source(str(path))
    return {name: info.inferred_type for name, info in build_report(opened.model).modules.items()}


def test_a_saved_sequential_state_dict_shows_its_layer_types(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.LayerNorm(8), nn.Embedding(10, 8))
    torch.save(model.state_dict(), tmp_path / "seq.pt")
    opened = open_source(str(tmp_path / "seq.pt"))
    assert type(opened.model).__name__ == "StateDictModule"  # the class stays: only the display changes
    inferred = _inferred(tmp_path / "seq.pt")
    assert inferred == {
        "": None,
        "0": "Linear(in_features=4, out_features=3)",
        "1": "Conv2d(3, 8, kernel_size=3)",
        "2": "BatchNorm(8)",
        "3": "LayerNorm(8)",
        # [10, 8] without bias is an Embedding or a Linear(8, 10, bias=False): said so, not guessed
        "4": "Linear(in_features=8, out_features=10, bias=False) or Embedding(10, 8)",
    }
    assert [kind_of(v) for v in inferred.values() if v] == ["Linear", "Conv2d", "BatchNorm", "LayerNorm", "Linear or Embedding"]


def test_names_settle_embedding_norm_and_gpt2_conv1d(tmp_path):
    tensors = {
        "wte.weight": torch.zeros(50, 8),
        "wpe.weight": torch.zeros(16, 8),
        "h.0.ln_1.weight": torch.ones(8),
        "h.0.ln_1.bias": torch.zeros(8),
        "h.0.attn.c_attn.weight": torch.zeros(8, 24),  # transformers' Conv1D: [in, out]
        "h.0.attn.c_attn.bias": torch.zeros(24),
        "h.0.mlp.c_proj.weight": torch.zeros(32, 8),
        "h.0.mlp.c_proj.bias": torch.zeros(8),
        "model.norm.weight": torch.ones(8),  # no bias: a norm only by its name
        "model.rms_norm.weight": torch.ones(8),
        "lm_head.weight": torch.zeros(50, 8),
        "odd.weight": torch.zeros(8),  # a lone 1-D weight without a hint: not guessed
        "odd2.weight": torch.zeros(3, 4),
        "odd2.bias": torch.zeros(5),  # matches no dimension: not guessed
    }
    safetensors.torch.save_file(tensors, str(tmp_path / "m.safetensors"))
    inferred = _inferred(tmp_path / "m.safetensors")
    assert inferred["wte"] == "Embedding(50, 8)" and inferred["wpe"] == "Embedding(16, 8)"
    assert inferred["h.0.ln_1"] == "LayerNorm(8)"
    assert inferred["h.0.attn.c_attn"] == "Conv1D(nf=24, nx=8)"
    assert inferred["h.0.mlp.c_proj"] == "Conv1D(nf=8, nx=32)"
    assert inferred["model.norm"] == "LayerNorm(8, bias=False)"
    assert inferred["model.rms_norm"] == "RMSNorm(8)"
    assert inferred["lm_head"] == "Linear(in_features=8, out_features=50, bias=False)"
    assert inferred["odd"] is None and inferred["odd2"] is None
    assert inferred["h.0"] is None and inferred["h"] is None  # containers of modules: nothing to say


def test_more_shapes():
    assert infer_type("c", {"weight": (16, 3, 5)}) == "Conv1d(3, 16, kernel_size=5, bias=False)"
    assert infer_type("c", {"weight": (16, 3, 3, 5), "bias": (16,)}) == "Conv2d(3, 16, kernel_size=(3, 5))"
    assert infer_type("bn", {"running_mean": (4,), "running_var": (4,)}) == "BatchNorm(4, affine=False)"
    assert infer_type("x", {"weight": (3, 4), "scale": (1,)}) is None  # another tensor: not a plain layer
    assert infer_type("x", {"weight": None, "bias": (3,)}) is None  # lazy: no shape


def test_json_is_unchanged_and_code_models_are_not_guessed(tmp_path):
    torch.save(nn.Sequential(nn.Linear(4, 3)).state_dict(), tmp_path / "one.pt")
    opened = open_source(str(tmp_path / "one.pt"))
    data = report_to_dict(build_report(opened.model))
    assert data["modules"][1]["type"] == "StateDictModule" and "inferred" not in str(data["modules"][1])
    live = build_report(nn.Sequential(nn.Linear(4, 3)))
    assert all(info.inferred_type is None for info in live.modules.values())  # real classes need no guess
    assert report_module.INFERRED_ATTRIBUTE == infer_types.INFERRED_ATTRIBUTE
