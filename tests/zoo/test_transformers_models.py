"""transformers models from tiny configs: counts, ties, statistics, default inputs, backward."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the zoo extra (transformers) is not installed")

from torch_reference import check_backward, check_structure  # noqa: E402

from paramscope.cli import main  # noqa: E402
from paramscope.core.backward.inputs import default_input  # noqa: E402
from paramscope.core.model.report import build_report  # noqa: E402

LLAMA = dict(
    vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
)  # fmt: skip


def tiny_llama(tie: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**LLAMA, tie_word_embeddings=tie)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("tie", [True, False])
def test_llama_counts_ties_and_statistics_equal_torch(tie) -> None:
    model = tiny_llama(tie)
    check_structure(model)
    tied = [g.names for g in build_report(model).tied_groups]
    assert tied == ([("model.embed_tokens.weight", "lm_head.weight")] if tie else [])


def test_llama_backward_runs_the_causal_lm_with_its_head() -> None:
    model = tiny_llama()
    spec = default_input(model)
    assert spec.text == "input_ids=randint(2, 8, high=64)"
    assert "main input input_ids" in (spec.note or "")
    result = check_backward(model, spec, lambda out: out.logits.sum())
    assert [leaf.shape for leaf in result.output.leaves] == [(2, 8, 64)]
    assert result.parameters["model.embed_tokens.weight"].aliases == (
        "model.embed_tokens.weight", "lm_head.weight",
    )


def test_grad_cli_on_a_llama_factory_differentiates_the_whole_model(tmp_path, capsys) -> None:
    factory = tmp_path / "factory.py"
    factory.write_text(textwrap.dedent(f"""
        import torch, transformers
        def llama():
            torch.manual_seed(0)
            return transformers.LlamaForCausalLM(transformers.LlamaConfig(**{LLAMA!r})).eval()
    """))
    assert main(["grad", f"{factory}:llama", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == "input_ids=randint(2, 8, high=64)"
    logits = [leaf for leaf in data["output"]["leaves"] if leaf["path"] == "['logits']"]
    assert [leaf["shape"] for leaf in logits] == [[2, 8, 64]]
    model = tiny_llama(tie=False)  # LlamaConfig's default, as in the factory
    expected = float(model(**default_input(model).make_call(0)[1]).logits.sum().detach())
    assert data["loss"] == expected
    assert any(n.startswith("model.embed_tokens") for n in (p["name"] for p in data["parameters"]))
    assert not any(d["kind"] == "unregistered" for d in data["diagnostics"])


def test_llama_attention_kernel_table_is_no_false_alarm() -> None:
    assert build_report(tiny_llama()).unregistered == []


VIT = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4)


@pytest.mark.parametrize("cls", ["ViTModel", "ViTForImageClassification"])
def test_vit_default_input_comes_from_its_config(cls) -> None:
    torch.manual_seed(0)
    model = getattr(transformers, cls)(transformers.ViTConfig(**VIT, num_labels=3)).eval()
    check_structure(model)
    spec = default_input(model)
    assert spec.text == "pixel_values=rand(2, 3, 8, 8)"
    assert "image_size 8, num_channels 3" in (spec.note or "")

    def loss(out):
        if cls == "ViTModel":
            return out.last_hidden_state.sum() + out.pooler_output.sum()
        return out.logits.sum()

    check_backward(model, spec, loss)


def test_bart_gets_encoder_and_decoder_ids() -> None:
    torch.manual_seed(0)
    config = transformers.BartConfig(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=32,
    )  # fmt: skip
    model = transformers.BartForConditionalGeneration(config).eval()
    check_structure(model)
    spec = default_input(model)
    assert spec.text == "input_ids=randint(2, 8, high=64); decoder_input_ids=randint(2, 8, high=64)"
    check_backward(model, spec, lambda out: out.logits.sum() + out.encoder_last_hidden_state.sum())
