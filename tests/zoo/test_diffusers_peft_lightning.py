"""diffusers, PEFT, Lightning and timm models: counts, default inputs and backward vs torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_reference import check_backward, check_structure

from paramscope.core.backward.backward import run_backward
from paramscope.core.backward.input_specs import parse_input_spec
from paramscope.core.backward.inputs import default_input


def test_diffusers_unet_default_input_is_sample_and_timestep() -> None:
    diffusers = pytest.importorskip("diffusers", reason="the zoo extra (diffusers) is not installed")
    torch.manual_seed(0)
    model = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    ).eval()  # fmt: skip
    check_structure(model)
    spec = default_input(model)
    assert spec.text == "sample=rand(2, 3, 8, 8); timestep=randint(2, high=1000)"
    assert spec.note == "UNet2DModel's config: in_channels 3, sample_size 8"
    check_backward(model, spec, lambda out: out.sample.sum())
    # keyword inputs typed by hand, as in the issue
    check_backward(model, parse_input_spec("sample=rand(1, 3, 8, 8); timestep=ones(1)"), lambda out: out.sample.sum())


def _peft_llama():
    transformers = pytest.importorskip("transformers", reason="the zoo extra (transformers) is not installed")
    peft = pytest.importorskip("peft", reason="the zoo extra (peft) is not installed")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
    )  # fmt: skip
    base = transformers.LlamaForCausalLM(config).eval()
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return peft.get_peft_model(base, lora).eval()


def test_peft_lora_model_runs_whole_and_only_adapters_get_gradients() -> None:
    model = _peft_llama()
    check_structure(model)
    spec = default_input(model)
    assert spec.text == "input_ids=randint(2, 8, high=64)"
    result = check_backward(model, spec, lambda out: out.logits.sum())
    assert [leaf.shape for leaf in result.output.leaves] == [(2, 8, 64)]
    received = {n for n, g in result.parameters.items() if g.received}
    assert received and all("lora_" in n for n in received)
    frozen = [n for n, g in result.parameters.items() if not g.requires_grad]
    assert len(frozen) + len(received) == len(result.parameters)


def test_lightning_module_with_a_model_attribute_runs_whole() -> None:
    lightning = pytest.importorskip("lightning", reason="the zoo extra (lightning) is not installed")

    class Classifier(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
            self.head = nn.Linear(5, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.model(x))

    torch.manual_seed(0)
    model = Classifier()
    check_structure(model)
    assert default_input(model).text == "rand(2, 6)"
    result = check_backward(model, default_input(model), lambda out: out.sum())
    assert result.output.leaves[0].shape == (2, 3)
    assert set(result.parameters) == {"model.0.weight", "model.0.bias", "head.weight", "head.bias"}


def test_timm_model_if_installed() -> None:
    timm = pytest.importorskip(
        "timm",
        reason="timm needs torchvision; on this index the torchvision wheel for torch 2.13 CPU "
        "requires torch>=2.14 and links CUDA, so it is not installed",
    )
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    check_structure(model)
    result = run_backward(model, "rand(1, 3, 32, 32)", record_signal=False)
    assert result.output.leaves[0].shape == (1, 3)
