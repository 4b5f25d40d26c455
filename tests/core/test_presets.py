"""Presets: named init recipes as rule texts, checked against what the recipes' own code does."""

from __future__ import annotations

import math

import pytest
import torch
from small_models import tiny_mixtral
from torch import nn

from paramscope.cli import main
from paramscope.core.edit.session import Session
from paramscope.core.init.presets import (
    PRESETS,
    PresetError,
    parse_preset,
    preset_rules,
    read_rules_file,
)
from paramscope.core.init.rule_plans import plan
from paramscope.core.init.rules import apply_rules
from paramscope.core.model.report import build_report
from paramscope.core.sources.sources import open_source


def rules_for(text: str, source: str = "demo:tiny_lm") -> tuple[Session, list[str]]:
    session = Session(open_source(source))
    return session, preset_rules(text, session.model, session.report).rules


def test_every_preset_names_its_source_and_its_rules_parse_on_tiny_lm():
    for name, preset in PRESETS.items():
        assert preset.source and preset.title
        text = {"mup": "mup(base_width=16)", "lsuv": "lsuv(input='randint(2,8,high=100)')"}.get(name, name)
        session, rules = rules_for(text)
        made = preset_rules(text, session.model, session.report)
        assert made.comments[0].startswith(f"preset {text}") and preset.source in made.comments[0]
        the_plan = plan(session, rules)
        assert all(rp.hits for rp in the_plan.rules), name  # a preset never carries a rule hitting nothing


def test_gpt2_matches_nanogpt_recipe_on_tiny_lm():
    session, rules = rules_for("gpt2")
    torch.manual_seed(0)
    apply_rules(session, rules, seed=0, skip_refused=True)
    model = session.model
    # two blocks, two residual projections each: std 0.02 / sqrt(2 * 2)
    for block in model.blocks.layers:
        assert torch.std(block.linear2.weight).item() == pytest.approx(0.02 / math.sqrt(4), rel=0.1)
        assert torch.std(block.linear1.weight).item() == pytest.approx(0.02, rel=0.1)
        assert torch.count_nonzero(block.linear1.bias) == 0
        assert torch.equal(block.norm1.weight, torch.ones(32)) and torch.count_nonzero(block.norm1.bias) == 0
    assert torch.std(model.embed.weight).item() == pytest.approx(0.02, rel=0.1)


def test_gpt2_reads_n_layer_from_a_transformers_config():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=64, n_positions=16)
    model = transformers.GPT2LMHeadModel(config)
    made = preset_rules("gpt2", model, build_report(model))
    assert "n_layers=3 (from the model's config)" in made.comments
    expected = 0.02 / math.sqrt(2 * 3)  # transformers' GPT2PreTrainedModel._init_weights uses this too
    assert made.rules[-1].endswith(f"=normal(mean=0.0,std={expected!r})")
    assert "c_proj" in made.rules[-1]


@pytest.mark.parametrize("preset", ["gpt2", "bert"])
def test_norm_layers_of_any_class_get_gain_one_and_shift_zero(preset):
    """Llama's LlamaRMSNorm derives from no torch norm and has no reset_parameters: under
    "weights" its gains were drawn near 0 (activations after each norm ~0.02 instead of ~1).
    transformers' own _init_weights sets every norm's weight to 1."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    norms = [n for n, m in model.named_modules() if type(m).__name__ == "LlamaRMSNorm"]
    assert len(norms) == 5
    with torch.no_grad():
        for name in norms:
            model.get_submodule(name).weight.fill_(3.0)
    session = Session(open_source_model(model))
    made = preset_rules(preset, session.model, session.report)
    apply_rules(session, made.rules, seed=0, skip_refused=True)
    for name in norms:
        assert torch.equal(session.model.get_submodule(name).weight, torch.ones(16)), name
    assert torch.std(session.model.model.layers[0].mlp.up_proj.weight).item() == pytest.approx(0.02, rel=0.2)
    with torch.no_grad():
        layer_norm = nn.LayerNorm(4)
        layer_norm.bias.fill_(5.0)
    mixed = Session(open_source_model(nn.Sequential(nn.Linear(4, 4), layer_norm, nn.BatchNorm1d(4))))
    apply_rules(mixed, preset_rules(preset, mixed.model, mixed.report).rules, seed=0, skip_refused=True)
    for index in ("1", "2"):
        norm = mixed.model.get_submodule(index)
        assert torch.equal(norm.weight, torch.ones(4)) and torch.equal(norm.bias, torch.zeros(4)), index


@pytest.mark.parametrize("preset", ["gpt2", "bert"])
def test_a_checkpoint_without_code_sets_its_norm_gains_by_the_inferred_type(tmp_path, preset):
    """A bare model.safetensors (no config): its containers are plain, ``type:*Norm*`` hit
    nothing and the norm gains fell under "weights", drawn N(0, 0.02) as in a Llama before the
    fix above. They are matched by the type their tensors show (``LayerNorm(16, bias=False)``)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = {
        "model.embed_tokens.weight": torch.randn(64, 16),
        "model.layers.0.input_layernorm.weight": torch.full((16,), 3.0),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(16, 16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(32, 16),
        "model.norm.weight": torch.full((16,), 3.0),
        "ln_f.weight": torch.full((16,), 3.0),
        "ln_f.bias": torch.full((16,), 5.0),
    }
    save_file(state, str(tmp_path / "model.safetensors"))
    session = Session(open_source(str(tmp_path / "model.safetensors")))
    assert session.report.modules["model.norm"].inferred_type == "LayerNorm(16, bias=False)"
    made = preset_rules(preset, session.model, session.report)
    apply_rules(session, made.rules, seed=0, skip_refused=True)
    for name in ("model.layers.0.input_layernorm.weight", "model.norm.weight", "ln_f.weight"):
        assert torch.equal(session.tensor(name).detach(), torch.ones(16)), name
    assert torch.equal(session.tensor("ln_f.bias").detach(), torch.zeros(16))
    assert torch.std(session.tensor("model.layers.0.mlp.up_proj.weight")).item() == pytest.approx(0.02, rel=0.2)


def test_block_quantized_float8_weights_and_their_scales_are_refused_saying_why(tmp_path):
    """An fp8 checkpoint (DeepSeek-V3, transformers' fp8) stores each weight as float8 with a
    scale per block beside it. gpt2 drew new float8 values under the old scales (weights ~1e-4
    of what was asked) and drew the scales themselves as weights (negative scales)."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    weight = torch.randn(16, 16) * 0.02
    scale = weight.abs().amax().reshape(1, 1) / 448.0
    state = {
        "layers.0.up.weight": (weight / scale).to(torch.float8_e4m3fn),
        "layers.0.up.weight_scale_inv": scale,
        "layers.0.gate.weight": torch.randn(16, 16),  # not quantized, a scale of its own beside it
        "layers.0.gate.weight_scale": torch.ones(1),
    }
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    session = Session(open_source(str(path)))
    the_plan = plan(session, ["weights=normal(mean=0.0,std=0.02)"])
    refused = {name: why for _, name, why in the_plan.refusals}
    assert refused == {
        "layers.0.up.weight": "stored quantized, scaled by layers.0.up.weight_scale_inv: new values would keep the "
        "old scales; initialize the unquantized model (e.g. its bfloat16 release)",
        "layers.0.up.weight_scale_inv": "a quantization scale of layers.0.up.weight, not a weight: initialize the "
        "unquantized model (e.g. its bfloat16 release)",
    }
    apply_rules(session, ["weights=normal(mean=0.0,std=0.02)"], seed=0, skip_refused=True)
    out = tmp_path / "out.safetensors"
    assert main(["init", str(path), "--preset", "gpt2", "-o", str(out)]) == 0
    written = load_file(str(out))
    for name in ("layers.0.up.weight", "layers.0.up.weight_scale_inv"):  # as stored, bit for bit
        assert torch.equal(written[name].view(torch.uint8), state[name].view(torch.uint8)), name
    assert not torch.equal(written["layers.0.gate.weight"], state["layers.0.gate.weight"])


def test_gpt_oss_mxfp4_experts_are_refused_as_quantized(tmp_path):
    """gpt-oss stores its experts as MXFP4 bytes with a scale per block: an init of either
    (the Initialize panel's selected tensor) is refused as quantized, not merely as "needs a
    floating-point tensor"; the scales as scales."""
    from safetensors.torch import save_file

    from paramscope.core.init.quantized import quantized_problem

    state = {
        "mlp.experts.down_proj_blocks": torch.zeros(2, 4, 1, 16, dtype=torch.uint8),
        "mlp.experts.down_proj_scales": torch.full((2, 4, 1), 127, dtype=torch.uint8),
        "mlp.experts.down_proj_bias": torch.zeros(2, 4),
        "other_scales": torch.ones(3, dtype=torch.uint8),  # no blocks beside it
    }
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    report = Session(open_source(str(path))).report
    assert quantized_problem("mlp.experts.down_proj_blocks", report) == (
        "stored quantized, scaled by mlp.experts.down_proj_scales: new values would keep the old scales; "
        "initialize the unquantized model (e.g. its bfloat16 release)"
    )
    assert quantized_problem("mlp.experts.down_proj_scales", report) == (
        "a quantization scale of mlp.experts.down_proj_blocks, not a weight: initialize the unquantized model "
        "(e.g. its bfloat16 release)"
    )
    assert quantized_problem("mlp.experts.down_proj_bias", report) is None
    assert quantized_problem("other_scales", report) is None


@pytest.mark.parametrize("preset", ["gpt2", "bert", "fixup"])
def test_a_mixture_of_experts_is_drawn_too(preset):
    """transformers 5 stacks the experts in 3-D parameters named gate_up_proj and down_proj: the
    presets' "weights" ('weight' in the name) left them, most of the model, as they were."""
    model = tiny_mixtral(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_local_experts=4)
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(5.0)
    session = Session(open_source_model(model))
    apply_rules(session, preset_rules(preset, session.model, session.report).rules, seed=0, skip_refused=True)
    for layer in session.model.model.layers:
        up, down = layer.mlp.experts.gate_up_proj, layer.mlp.experts.down_proj
        if preset == "fixup":
            assert torch.count_nonzero(down) == 0 and torch.all(up == 5.0)  # the residual branch's end only
            continue
        assert torch.std(up).item() == pytest.approx(0.02 * (0.88 if preset == "bert" else 1), rel=0.1)
        expected = 0.02 * 0.88 if preset == "bert" else 0.02 / math.sqrt(2 * 2)  # gpt2: a residual projection
        assert torch.std(down).item() == pytest.approx(expected, rel=0.1)


def open_source_model(model: nn.Module):
    from paramscope.core.sources.sources import OpenedModel

    return OpenedModel(model, "test", "python")


def test_bert_truncates_at_two_std():
    session, rules = rules_for("bert")
    apply_rules(session, rules, seed=1, skip_refused=True)
    weight = session.model.blocks.layers[0].linear1.weight
    assert weight.abs().max().item() <= 0.04
    assert torch.std(weight).item() == pytest.approx(0.02 * 0.88, rel=0.1)  # std of N(0,1) cut at ±2: 0.880


def test_pytorch_preset_restores_reset_parameters_bit_for_bit():
    session, rules = rules_for("pytorch", "demo:mlp")
    assert rules == ["type:Linear=default"]
    before = {n: t.clone() for n, t in session.model.state_dict().items()}
    apply_rules(session, rules, seed=3)
    again, _ = rules_for("pytorch", "demo:mlp")
    apply_rules(again, rules, seed=3)
    assert all(torch.equal(again.model.state_dict()[n], t) for n, t in session.model.state_dict().items())
    assert not torch.equal(session.model.state_dict()["0.weight"], before["0.weight"])


def test_pytorch_preset_lists_what_has_no_default_and_skips_subclass_rules():
    session, rules = rules_for("pytorch")
    made = preset_rules("pytorch", session.model, session.report)
    assert "type:NonDynamicallyQuantizableLinear=default" not in rules and "type:Linear=default" in rules
    assert any("in_proj_weight (MultiheadAttention)" in c for c in made.comments)


def test_fixup_zeroes_residual_branch_ends_only():
    session, rules = rules_for("fixup")
    apply_rules(session, rules, seed=0)
    block = session.model.blocks.layers[0]
    assert torch.count_nonzero(block.linear2.weight) == 0 and torch.count_nonzero(block.self_attn.out_proj.weight) == 0
    assert torch.count_nonzero(block.linear1.weight) > 0


def test_mup_scales_hidden_by_sqrt_width_mult_and_readout_by_width_mult():
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5))
    report = build_report(model)
    made = preset_rules("mup(base_width=16)", model, report)
    text = "\n".join(made.rules)
    assert r"re:^(0\.weight)$=normal(mean=0.0,std=0.02)" in text  # input layer: fan_in 10 does not scale
    assert r"re:^(2\.weight)$=normal(mean=0.0,std=0.01)" in text  # hidden: 0.02 / sqrt(64/16)
    assert r"re:^(4\.weight)$=normal(mean=0.0,std=0.005)" in text  # readout: 0.02 / (64/16)
    zero = preset_rules("mup(base_width=16, readout=zero)", model, report)
    assert r"re:^(4\.weight)$=zeros" in zero.rules


def test_mup_on_grouped_query_attention_and_a_vocabulary_that_is_a_multiple_of_the_width():
    """Llama's k_proj/v_proj map 64 to 32 (2 of 4 heads): hidden layers, not readouts (they were
    drawn width_mult times too small); lm_head's 128 outputs are a multiple of 64 but it is the
    readout (it was drawn as a hidden layer)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32, tie_word_embeddings=False,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config)
    made = preset_rules("mup(base_width=16)", model, build_report(model))
    stds = {}
    for rule in made.rules:
        selector, _, init = rule.partition("=")
        for name in selector.removeprefix("re:^(").removesuffix(")$").split("|"):
            stds[name.replace("\\.", ".")] = init
    hidden, readout = "normal(mean=0.0,std=0.01)", "normal(mean=0.0,std=0.005)"  # 0.02/sqrt(4), 0.02/4
    assert stds["model.layers.0.self_attn.k_proj.weight"] == stds["model.layers.0.self_attn.v_proj.weight"] == hidden
    assert stds["model.layers.0.self_attn.q_proj.weight"] == stds["model.layers.0.mlp.down_proj.weight"] == hidden
    assert stds["lm_head.weight"] == readout
    assert stds["model.embed_tokens.weight"] == "normal(mean=0.0,std=0.02)"
    assert any("or of 32 (the key/value width of grouped-query attention)" in c for c in made.comments)


def test_mup_scales_stacked_experts_as_hidden_matrices():
    """Each expert is a hidden matrix (64 -> 128 -> 64 at width 64): torch's fans of the 3-D tensor
    would not say so, and "weight" is not in the names gate_up_proj and down_proj."""
    model = tiny_mixtral(vocab_size=100, hidden_size=64, intermediate_size=128, num_key_value_heads=2)
    made = preset_rules("mup(base_width=16)", model, build_report(model))
    hidden = next(rule for rule in made.rules if rule.endswith("=normal(mean=0.0,std=0.01)"))  # 0.02/sqrt(4)
    assert r"experts\.gate_up_proj" in hidden and r"experts\.down_proj" in hidden


def test_preset_arguments_are_checked():
    with pytest.raises(PresetError, match="needs base_width"):
        parse_preset("mup")
    with pytest.raises(PresetError, match="no argument 'sdt'"):
        parse_preset("gpt2(sdt=0.1)")
    with pytest.raises(PresetError, match="unknown preset 'gtp2'"):
        parse_preset("gtp2")
    assert parse_preset("gpt2(std=0.01, n_layers=12)")[1]["n_layers"] == 12


def test_cli_presets_list_show_and_edit_then_apply(tmp_path, capsys):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in PRESETS) and "Radford" in listing
    assert main(["presets", "gpt2", "demo:tiny_lm"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# preset gpt2") and "weights=normal(mean=0.0,std=0.02)" in text
    edited = tmp_path / "rules.txt"
    edited.write_text(text.replace("std=0.02)", "std=0.5)"))
    out = tmp_path / "out.pt"
    assert main(["init", "demo:tiny_lm", "--rules-file", str(edited), "--seed", "0", "-o", str(out)]) == 0
    state = torch.load(out, weights_only=True)
    assert torch.std(state["blocks.layers.0.linear1.weight"]).item() == pytest.approx(0.5, rel=0.1)
    assert read_rules_file("# c\n\n a=zeros \n") == ["a=zeros"]


def test_cli_init_preset_dry_run_lists_tensors_and_changes_nothing(tmp_path, capsys):
    assert main(["init", "demo:tiny_lm", "--preset", "gpt2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# preset gpt2" in out and "linear2.weight" in out and "type:*Norm*=ones: 10 tensor(s)" in out
    assert main(["init", "demo:tiny_lm", "--preset", "nope", "--dry-run"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_rules_that_hit_nothing_are_left_out_with_a_comment():
    session = Session(open_source("demo:mlp"))
    made = preset_rules("gpt2", session.model, session.report)
    assert "type:*Norm*=ones" not in made.rules
    assert "left out (hits nothing in this model): type:*Norm*=ones" in made.comments
    assert not any("Experts" in c for c in made.comments)  # most models have no experts: not worth a line
    assert made.rules[:2] == ["weights=normal(mean=0.0,std=0.02)", "biases=zeros"]
