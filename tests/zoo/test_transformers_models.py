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


def _whisper() -> torch.nn.Module:
    config = transformers.WhisperConfig(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=8,
        max_source_positions=16, max_target_positions=16, decoder_start_token_id=1, pad_token_id=0,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return transformers.WhisperForConditionalGeneration(config).eval()


def _wav2vec2() -> torch.nn.Module:
    config = transformers.Wav2Vec2Config(
        vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )  # fmt: skip
    return transformers.Wav2Vec2ForCTC(config).eval()


def _every_output(out) -> torch.Tensor:  # paramscope's "sum": every floating-point tensor of the output
    return out.logits.sum() + (out.encoder_last_hidden_state.sum() if "encoder_last_hidden_state" in out else 0)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (_whisper, "input_features=rand(2, 8, 32); decoder_input_ids=randint(2, 8, high=64)"),
        (_wav2vec2, "input_values=rand(2, 16000)"),
    ],
    ids=["whisper", "wav2vec2"],
)
def test_speech_models_get_an_input_of_their_own_kind(build, expected) -> None:
    """Whisper's encoder wants 2 x max_source_positions mel frames and a decoder input; wav2vec2 a
    waveform: the first-layer guess (a mel window of 16 frames) failed in the forward."""
    torch.manual_seed(0)
    model = build()
    spec = default_input(model)
    assert spec.text == expected
    check_backward(model, spec, _every_output)
