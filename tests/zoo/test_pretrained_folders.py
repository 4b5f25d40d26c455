"""Folders written by save_pretrained (transformers, diffusers, peft) open as people save them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the zoo extra (transformers) is not installed")

from torch_reference import check_backward, check_structure  # noqa: E402

from paramscope.core.backward.inputs import default_input  # noqa: E402
from paramscope.core.errors import SourceError  # noqa: E402
from paramscope.core.files import regions  # noqa: E402
from paramscope.core.files.export import state_dict_for  # noqa: E402
from paramscope.core.model.report import build_report  # noqa: E402
from paramscope.core.sources.diff import diff_sources  # noqa: E402
from paramscope.core.sources.sources import open_source  # noqa: E402

LLAMA = dict(
    vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
)  # fmt: skip


def _llama(folder: Path, seed: int = 0, **save: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA, tie_word_embeddings=True)).eval()
    model.save_pretrained(str(folder), **save)
    return model


@pytest.mark.parametrize(
    "save",
    [{}, {"max_shard_size": "8KB"}, {"safe_serialization": False}],
    ids=["model.safetensors", "shards+index", "pytorch_model.bin"],
)
def test_a_transformers_folder_opens_as_its_real_class(tmp_path: Path, save: dict) -> None:
    saved = _llama(tmp_path, **save)
    opened = open_source(str(tmp_path))
    model = opened.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert opened.can_forward
    assert any("built LlamaForCausalLM from config.json" in note for note in opened.notes)
    for name, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    check_structure(model)
    assert [g.names for g in build_report(model).tied_groups] == [("model.embed_tokens.weight", "lm_head.weight")]
    # backward on the opened model equals plain torch on transformers' own loading
    reference = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path)).eval()
    spec = default_input(model)
    ours = check_backward(model, spec, lambda out: out.logits.sum())
    theirs = check_backward(reference, spec, lambda out: out.logits.sum())
    assert ours.loss == theirs.loss


@pytest.mark.parametrize("lazy", [False, True], ids=["read whole", "over the lazy size"])
def test_a_bfloat16_folder_opens_in_bfloat16_as_from_pretrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lazy: bool
) -> None:
    """The class builds float32; the files hold bfloat16: the tensors must stay bfloat16 (shown,
    edited and exported as the files hold them, at half the memory), as transformers loads them."""
    from safetensors.torch import load_file

    from paramscope.core.edit.session import Session
    from paramscope.core.files import regions
    from paramscope.core.files.export import export_model

    torch.manual_seed(0)
    saved = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA, tie_word_embeddings=True)).eval()
    saved.to(torch.bfloat16).save_pretrained(str(tmp_path / "model"), max_shard_size="8KB")
    if lazy:
        monkeypatch.setattr(regions, "LAZY_BYTES", 0)
    opened = open_source(str(tmp_path / "model"))
    reference = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "model")).eval()
    session = Session(opened)
    theirs = dict(reference.named_parameters())
    assert {n: p.dtype for n, p in opened.model.named_parameters()} == {n: p.dtype for n, p in theirs.items()}
    assert {info.dtype for info in session.report.parameters.values()} == {"bfloat16"}
    assert opened.model.lm_head.weight is opened.model.model.embed_tokens.weight  # still one tensor
    for name, value in theirs.items():
        assert torch.equal(session.values(name), value.detach()), name
    assert any("in bfloat16 as in the files" in note for note in opened.notes), opened.notes
    out = tmp_path / "out.safetensors"
    export_model(session.model, out, loader=opened.loader)
    written = load_file(str(out))
    for name, value in reference.state_dict().items():
        if name in written:
            assert written[name].dtype == value.dtype and torch.equal(written[name], value), name
    if not lazy:  # backward in the files' dtype, as on transformers' own loading
        spec = default_input(opened.model)
        ours = check_backward(opened.model, spec, lambda out: out.logits.sum())
        assert ours.loss == check_backward(reference, spec, lambda out: out.logits.sum()).loss


@pytest.mark.parametrize("shard", ["8KB", None], ids=["shards+index", "one file"])
def test_a_folder_saved_with_a_variant_opens_as_its_real_class(tmp_path: Path, shard: str | None) -> None:
    """``save_pretrained(variant="fp16")`` names the files ``model.fp16.safetensors`` or
    ``model.safetensors.index.fp16.json`` (as diffusers repositories ship half precision)."""
    torch.manual_seed(0)
    saved = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA)).eval().to(torch.float16)
    saved.save_pretrained(str(tmp_path), variant="fp16", **({"max_shard_size": shard} if shard else {}))
    opened = open_source(str(tmp_path))
    assert opened.path.name == ("model.safetensors.index.fp16.json" if shard else "model.fp16.safetensors")
    assert type(opened.model).__name__ == "LlamaForCausalLM" and opened.can_forward
    reference = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path), variant="fp16")
    for name, value in reference.state_dict().items():
        assert opened.model.state_dict()[name].dtype == value.dtype == torch.float16, name
        assert torch.equal(opened.model.state_dict()[name], value), name
    saved.save_pretrained(str(tmp_path), variant="bf16")  # two variants: the user picks
    with pytest.raises(SourceError, match=r"several variants \(bf16, fp16: "):
        open_source(str(tmp_path))


def _quantized_folder(folder: Path, layout: str, quantization: dict | None) -> dict[str, torch.Tensor]:
    """A Llama folder whose projections are stored as a quantization library stores them: GPTQ's
    ``qweight``/``qzeros``/``scales`` in place of ``weight``, or bitsandbytes' packed ``weight``."""
    from safetensors.torch import save_file

    saved = _llama(folder)
    tensors = {}
    for name, value in saved.state_dict().items():
        if not name.endswith("proj.weight"):
            tensors[name] = value.half()
        elif layout == "gptq":
            base = name.removesuffix(".weight")
            tensors |= {
                f"{base}.qweight": torch.zeros(value.shape[1] // 8, value.shape[0], dtype=torch.int32),
                f"{base}.scales": torch.ones(1, value.shape[0], dtype=torch.float16),
            }
        else:
            tensors |= {name: torch.zeros(value.numel() // 2, 1, dtype=torch.uint8), f"{name}.absmax": torch.ones(4)}
    (folder / "model.safetensors").unlink()
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    if quantization is not None:
        config["quantization_config"] = quantization
    (folder / "config.json").write_text(json.dumps(config))
    return tensors


@pytest.mark.parametrize("layout", ["gptq", "bitsandbytes"])
@pytest.mark.parametrize("declared", [True, False], ids=["quantization_config", "no config entry"])
def test_a_quantized_folder_shows_its_stored_tensors(tmp_path: Path, layout: str, declared: bool) -> None:
    """Built as the plain class, GPTQ files showed Linear weights with random values (the file's
    qweight/scales dropped), and bitsandbytes files did not open (a size mismatch)."""
    tensors = _quantized_folder(tmp_path, layout, {"quant_method": layout, "bits": 4} if declared else None)
    opened = open_source(str(tmp_path))
    assert type(opened.model).__name__ == "StateDictModule"
    written = state_dict_for(opened.model)
    assert set(written) == set(tensors)
    for name, value in tensors.items():
        assert written[name].dtype == value.dtype and torch.equal(written[name], value), name
    expected = (
        f"config.json describes a model quantized with {layout}" if declared
        else "the files do not fit config.json's LlamaForCausalLM ("
    )
    assert any(note.startswith(expected) for note in opened.notes), opened.notes


def test_a_folder_read_whole_takes_the_files_tensors_as_its_parameters(tmp_path: Path) -> None:
    """Built in float32, initialized and then overwritten, a bfloat16 0.5B model took 3.8 GB and
    12 s to open (from_pretrained: 0.4 GB, 5 s). Parameters are now built on meta and the files'
    tensors become them; the buffers the class computes (rotary tables) are real."""
    from paramscope.core.files import read_checkpoint
    from paramscope.core.files.pretrained import build_pretrained

    pytest.importorskip("accelerate", reason="parameters are built on meta through accelerate (the zoo extra)")
    saved = _llama(tmp_path)
    checkpoint = read_checkpoint(tmp_path / "model.safetensors")
    model, _notes = build_pretrained(tmp_path, checkpoint)
    files = checkpoint.all_tensors()
    for name, param in model.named_parameters():
        if name in files:
            assert param.data_ptr() == files[name].data_ptr(), name  # the same memory: no second copy
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert torch.equal(model.model.rotary_emb.inv_freq, saved.model.rotary_emb.inv_freq)
    assert not any(t.device.type == "meta" for t in [*model.parameters(), *model.buffers()])


def test_folders_work_for_weights_and_diff(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _llama(first, seed=0)
    _llama(second, seed=1)
    assert not diff_sources(str(first), str(second)).identical
    assert diff_sources(str(first), str(first)).identical
    opened = open_source(str(first), weights=str(second))
    torch.manual_seed(1)
    again = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA, tie_word_embeddings=True))
    assert torch.equal(opened.model.lm_head.weight, again.lm_head.weight)


def _logits_sum(out: object) -> torch.Tensor:
    return out.logits.sum()  # type: ignore[attr-defined]


@pytest.mark.parametrize("layout", ["vit", "mixtral", "base model"])
def test_files_in_another_layout_load_as_from_pretrained_loads_them(tmp_path: Path, layout: str) -> None:
    """transformers 5 saves ViT under its older attention names and a mixture of experts with one
    tensor per expert, and loads a base model's weights into a head class: built as the plain
    class these showed random weights (or, once refused, only the tensors)."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    small = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    if layout == "vit":
        cls = transformers.ViTForImageClassification
        saved = cls(transformers.ViTConfig(image_size=8, patch_size=4, num_labels=3, **small))
    elif layout == "mixtral":
        cls = transformers.MixtralForCausalLM
        config = transformers.MixtralConfig(vocab_size=64, num_key_value_heads=1, num_local_experts=2, num_experts_per_tok=1, **small)
        saved = cls(config)
    else:
        cls = transformers.LlamaForCausalLM
        saved = transformers.LlamaModel(transformers.LlamaConfig(**LLAMA))
    saved.save_pretrained(str(tmp_path))
    if layout == "base model":
        config = json.loads((tmp_path / "config.json").read_text())
        (tmp_path / "config.json").write_text(json.dumps(config | {"architectures": ["LlamaForCausalLM"]}))
    assert set(load_file(str(tmp_path / "model.safetensors"))) != set(cls.from_pretrained(str(tmp_path)).state_dict())
    opened = open_source(str(tmp_path))
    reference = cls.from_pretrained(str(tmp_path)).eval()
    assert type(opened.model) is cls and opened.can_forward and not opened.model.training
    ours = opened.model.state_dict()
    assert list(ours) == list(reference.state_dict())
    for name, value in reference.state_dict().items():
        if name != "lm_head.weight" or layout != "base model":  # (not in the files: random in both)
            assert torch.equal(ours[name], value), name
    assert any("the files' names are not the class's" in note for note in opened.notes), opened.notes
    if layout == "base model":
        assert "1 tensor(s) of the model not in the files keep their initial values, e.g. lm_head.weight" in opened.notes
    else:
        spec = default_input(opened.model)
        assert check_backward(opened.model, spec, _logits_sum).loss == check_backward(reference, spec, _logits_sum).loss


def test_a_class_transformers_does_not_have_is_named(tmp_path: Path) -> None:
    _llama(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"architectures": ["MyFancyLM"], "model_type": "fancy"}))
    opened = open_source(str(tmp_path))
    assert type(opened.model).__name__ == "StateDictModule"
    assert "config.json names MyFancyLM, a class the installed transformers does not have; shown from the tensors" in opened.notes


def test_a_config_with_its_own_code_is_not_built(tmp_path: Path) -> None:
    _llama(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "modeling_evil.py").write_text("raise SystemExit('ran code from the folder')\n")
    opened = open_source(str(tmp_path))
    assert type(opened.model).__name__ == "StateDictModule"
    assert any("never run from a data folder" in note for note in opened.notes)


def test_a_peft_adapter_folder_and_a_diffusers_folder(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    diffusers = pytest.importorskip("diffusers")
    base = _llama(tmp_path / "base")
    adapter = peft.get_peft_model(base, peft.LoraConfig(target_modules=["q_proj"], r=2))
    adapter.save_pretrained(str(tmp_path / "adapter"))
    opened = open_source(str(tmp_path / "adapter"))
    assert opened.path.name == "adapter_model.safetensors"
    assert all("lora_" in name for name in opened.model.state_dict())
    # what the A and B matrices are: peft's own scale, the layers, the base model
    layer = adapter.base_model.model.model.layers[0].self_attn.q_proj
    assert (
        f"a PEFT LORA adapter; rank 2, lora_alpha 8 (B @ A is scaled by {layer.scaling['default']:g}); adapting q_proj; "
        "for LlamaForCausalLM: these are the adapter's own tensors"
    ) in opened.notes

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )  # fmt: skip
    unet.save_pretrained(str(tmp_path / "unet"))
    opened = open_source(str(tmp_path / "unet"))
    assert type(opened.model).__name__ == "UNet2DModel"
    for name, value in unet.state_dict().items():
        assert torch.equal(opened.model.state_dict()[name], value), name


def test_tied_names_with_different_values_say_which_wins(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    saved = _llama(tmp_path)
    state = {k: v.clone() for k, v in saved.state_dict().items()}
    state["lm_head.weight"] = torch.randn_like(state["lm_head.weight"])  # a file that stores both, apart
    save_file(state, str(tmp_path / "model.safetensors"))
    opened = open_source(str(tmp_path))
    expected = transformers.LlamaForCausalLM(saved.config)
    expected.load_state_dict(state)  # torch keeps the last it copies
    assert torch.equal(opened.model.lm_head.weight, expected.lm_head.weight)
    assert torch.equal(opened.model.lm_head.weight, state["lm_head.weight"])
    assert any(
        "lm_head.weight is loaded into the tied model.embed_tokens.weight; model.embed_tokens.weight in the file differs" in n
        for n in opened.notes
    ), opened.notes


@pytest.mark.parametrize("save", [{}, {"max_shard_size": "8KB"}], ids=["one file", "shards"])
@pytest.mark.parametrize("accelerate", [True, False], ids=["buffers computed", "all on meta"])
def test_statistics_of_a_lazy_folder_and_buffers_in_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, save: dict, accelerate: bool
) -> None:
    """Every real Llama folder (over 1 GiB: built on the meta device) failed `inspect` with
    "unexpected error: KeyError: 'model.rotary_emb.inv_freq'": a buffer computed when the model is
    built, in no file. With accelerate it is computed as the class does; without, it has no values
    and says so."""
    from paramscope.core.edit.session import Session
    from paramscope.core.errors import NotInFiles
    from paramscope.core.files import pretrained
    from paramscope.core.model.inspection import inspect_model

    if accelerate:
        pytest.importorskip("accelerate")
    else:
        monkeypatch.setattr(pretrained, "_parameters_on_meta", lambda: torch.device("meta"))
    saved = _llama(tmp_path, **save)
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)
    opened = open_source(str(tmp_path))
    assert opened.model.model.embed_tokens.weight.device.type == "meta"  # read when looked at
    data = inspect_model(opened.model, loader=opened.loader)
    buffers = {b["name"]: b for b in data["buffers"]}
    stats = {p["name"]: p["stats"] for p in data["parameters"]}
    weight = saved.model.layers[0].mlp.up_proj.weight.detach().double()
    assert stats["model.layers.0.mlp.up_proj.weight"]["max"] == float(weight.max())
    rotary = buffers["model.rotary_emb.inv_freq"]["stats"]
    if accelerate:
        assert rotary["max"] == float(saved.model.rotary_emb.inv_freq.double().max())
        assert torch.equal(Session(opened).values("model.rotary_emb.inv_freq"), saved.model.rotary_emb.inv_freq)
    else:
        assert "no values: not in the files" in rotary["note"]
        with pytest.raises(NotInFiles, match="holds no tensor 'model.rotary_emb.inv_freq'"):
            Session(opened).values("model.rotary_emb.inv_freq")


def test_a_lazy_folder_storing_both_tied_names_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the lazy size the values are not read: whether the two names differ is not known
    (torch.equal on the placeholders raised NotImplementedError)."""
    from safetensors.torch import save_file

    from paramscope.core.files import regions

    saved = _llama(tmp_path)
    save_file({k: v.clone() for k, v in saved.state_dict().items()}, str(tmp_path / "model.safetensors"))
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)
    opened = open_source(str(tmp_path))
    assert type(opened.model).__name__ == "LlamaForCausalLM" and opened.loader is not None


def test_weights_report_names_the_tie_conflict_in_json(tmp_path: Path) -> None:
    from paramscope.core.files.weights_fit import compare_weights

    saved = _llama(tmp_path)
    state = {k: v.clone() for k, v in saved.state_dict().items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"] + 1
    report = compare_weights(saved, state)
    assert report.to_dict()["tie_conflicts"] == [
        {"name": "model.embed_tokens.weight", "kept": "lm_head.weight", "differing": ["model.embed_tokens.weight"]}
    ]
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    assert compare_weights(saved, state).tie_conflicts == []


def test_a_folder_over_the_lazy_size_is_built_on_meta_and_read_per_tensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paramscope.core.edit.session import Session
    from paramscope.core.files import regions
    from paramscope.core.files.export import export_model

    saved = _llama(tmp_path / "model")
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)  # as a folder of many gigabytes opens
    opened = open_source(str(tmp_path / "model"))
    assert type(opened.model).__name__ == "LlamaForCausalLM"
    assert opened.loader is not None and not opened.can_forward
    assert opened.model.lm_head.weight.device.type == "meta"
    session = Session(opened)
    assert [g.names for g in session.report.tied_groups] == [("model.embed_tokens.weight", "lm_head.weight")]
    for name, value in saved.named_parameters():
        assert torch.equal(session.values(name), value.detach()), name
    with torch.no_grad():
        session.editable("model.norm.weight").fill_(2.0)  # an edit reads that tensor first
    out = tmp_path / "out.safetensors"
    export_model(session.model, out, loader=opened.loader)
    from safetensors.torch import load_file

    written = load_file(str(out))
    assert torch.equal(written["model.norm.weight"], torch.full_like(saved.model.norm.weight, 2.0))
    assert torch.equal(written["model.layers.1.mlp.up_proj.weight"], saved.model.layers[1].mlp.up_proj.weight.detach())


def test_placeholders_and_dtypes_keep_a_tie_the_class_has_no_tie_weights_for() -> None:
    """A parameter held by two modules (a diffusers model has no tie_weights to mend it) stays one
    tensor when it becomes a placeholder or takes the files' dtype."""
    from torch import nn

    from paramscope.core.files.pretrained import _placeholders_for, as_in_files

    shared = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    shared[1].weight = shared[0].weight
    assert as_in_files(shared, {"1.weight": torch.zeros(3, 3, dtype=torch.bfloat16)}) == [
        "1 tensor(s) in bfloat16 as in the files (the class builds them as float32)"
    ]
    assert shared[0].weight is shared[1].weight and shared[0].weight.dtype == torch.bfloat16
    _placeholders_for(shared, {"1.weight", "0.bias"})
    assert shared[0].weight is shared[1].weight and shared[0].weight.device.type == "meta"
    assert shared[0].bias.device.type == "meta" and shared[1].bias.device.type == "cpu"
