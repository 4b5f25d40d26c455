"""Every file source opens: state_dicts (.pt/.pth/.bin, legacy), safetensors, shards, archives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file, save_model
from torch import nn

from paramscope.core.errors import SourceError
from paramscope.core.files import UntrustedFileError, read_checkpoint
from paramscope.core.model.report import build_report
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import open_source


def _same_values(model: nn.Module, reference: nn.Module) -> None:
    got, want = model.state_dict(), reference.state_dict()
    assert sorted(got) == sorted(want)
    for name in want:
        assert torch.equal(got[name], want[name]), name


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
def test_zip_state_dict_opens_as_tree_with_ties(tmp_path: Path, suffix: str) -> None:
    lm = build_demo("tiny_lm")
    path = tmp_path / f"lm{suffix}"
    torch.save(lm.state_dict(), path)
    opened = open_source(str(path))
    assert opened.kind == "state_dict"
    assert "forward" in opened.forward_unavailable
    _same_values(opened.model, lm)
    report = build_report(opened.model)
    assert report.parameters["embed.weight"].aliases == ("embed.weight", "head.weight")
    assert opened.model.get_submodule("blocks.layers.0.self_attn").in_proj_weight.shape == (96, 32)


def test_legacy_format_and_buffers(tmp_path: Path) -> None:
    cnn = build_demo("cnn")
    path = tmp_path / "cnn_legacy.pt"
    torch.save(cnn.state_dict(), path, _use_new_zipfile_serialization=False)
    opened = open_source(str(path))
    _same_values(opened.model, cnn)
    report = build_report(opened.model)
    assert "features.1.running_mean" in report.buffers
    assert report.buffers["features.1.num_batches_tracked"].dtype == "int64"
    assert "features.1.weight" in report.parameters


def test_safetensors_with_aliases_is_retied(tmp_path: Path) -> None:
    lm = build_demo("tiny_lm")
    path = tmp_path / "lm.safetensors"
    save_model(lm, str(path))
    opened = open_source(str(path))
    model = opened.model
    assert model.get_submodule("head").weight is model.get_submodule("embed").weight
    _same_values(model, lm)


def test_content_decides_not_extension(tmp_path: Path) -> None:
    mlp = build_demo("mlp")
    as_pt = tmp_path / "really_safetensors.pt"
    save_file(dict(mlp.state_dict()), str(as_pt))
    as_st = tmp_path / "really_torch.safetensors"
    torch.save(mlp.state_dict(), as_st)
    _same_values(open_source(str(as_pt)).model, mlp)
    _same_values(open_source(str(as_st)).model, mlp)


def test_checkpoint_dict_weights_and_extras(tmp_path: Path) -> None:
    mlp = build_demo("mlp")
    optimizer = torch.optim.SGD(mlp.parameters(), lr=0.1, momentum=0.9)
    mlp(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    path = tmp_path / "ckpt.pt"
    torch.save(
        {"epoch": 7, "arch": "mlp", "model": mlp.state_dict(), "optimizer": optimizer.state_dict(),
         "config": {"width": 3, "act": "relu"}},
        path,
    )
    opened = open_source(str(path))
    _same_values(opened.model, mlp)
    assert opened.extras["epoch"] == 7
    assert opened.extras["arch"] == "mlp"
    assert "optimizer state" in str(opened.extras["optimizer"])
    assert any("'model' entry" in n for n in opened.notes)


def test_nested_dicts_single_tensor_and_non_tensor_entries(tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    torch.save({"encoder": {"w": torch.ones(2, 2), "steps": 5}, "name": "x"}, path)
    opened = open_source(str(path))
    assert dict(opened.model.named_parameters())["encoder.w"].shape == (2, 2)
    assert opened.extras == {"encoder.steps": 5, "name": "x"}
    single = tmp_path / "tensor.pt"
    torch.save(torch.arange(3.0), single)
    assert torch.equal(open_source(str(single)).model.tensor, torch.arange(3.0))


def test_names_that_clash_with_module_attributes(tmp_path: Path) -> None:
    path = tmp_path / "clash.safetensors"
    save_file({"forward.weight": torch.ones(1), "a": torch.ones(2), "a.b": torch.zeros(2)}, str(path))
    opened = open_source(str(path))
    values = sorted(t.numel() for t in opened.model.state_dict().values())
    assert values == [1, 2, 2]
    assert opened.notes  # the renames are explained


def _write_sharded(folder: Path, model: nn.Module, fmt: str) -> Path:
    state = model.state_dict()
    names = list(state)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        shard = f"model-{i + 1:05d}-of-00002.{fmt}"
        tensors = {k: state[k].clone() for k in part}
        if fmt == "safetensors":
            save_file(tensors, str(folder / shard))
        else:
            torch.save(tensors, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    index = folder / f"model.{fmt}.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_sharded_index(tmp_path: Path, fmt: str) -> None:
    cnn = build_demo("cnn")
    index = _write_sharded(tmp_path, cnn, fmt)
    opened = open_source(str(index))
    assert opened.kind == "sharded"
    _same_values(opened.model, cnn)
    # the folder itself opens through its single index
    _same_values(open_source(str(tmp_path)).model, cnn)


def test_one_shard_picked_alone_says_which_index_holds_the_model(tmp_path: Path) -> None:
    index = _write_sharded(tmp_path, build_demo("cnn"), "safetensors")
    shards = sorted(p for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    assert len(shards) > 1
    opened = open_source(str(shards[0]))
    assert f"{shards[0].name} is one of {len(shards)} shards of {index.name}: open the folder or the index for the whole model" in opened.notes
    assert not any("shards of" in note for note in open_source(str(index)).notes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_needs_trust_then_opens(tmp_path: Path) -> None:
    mlp = build_demo("mlp")
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(mlp), str(path))
    with pytest.raises(UntrustedFileError, match="TorchScript"):
        open_source(str(path))
    opened = open_source(str(path), trust=True)
    assert opened.kind == "torchscript"
    assert opened.can_forward
    x = torch.randn(2, 4)
    assert torch.allclose(opened.model(x), mlp(x))


def test_exported_program_needs_trust_then_opens(tmp_path: Path) -> None:
    mlp = build_demo("mlp")
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(mlp, (torch.randn(2, 4),)), str(path))
    with pytest.raises(UntrustedFileError, match="pt2"):
        open_source(str(path))
    opened = open_source(str(path), trust=True)
    assert opened.kind == "export"
    assert sorted(t.numel() for t in opened.model.state_dict().values()) == [1, 3, 3, 12]


def test_whole_pickled_module_refused_then_trusted(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(build_demo("mlp"), path)
    with pytest.raises(UntrustedFileError) as info:
        open_source(str(path))
    message = str(info.value)
    assert str(path) in message and "--trust" in message and "arbitrary code" in message
    assert "weights_only=False" not in message
    assert info.value.path == path
    opened = open_source(str(path), trust=True)
    assert opened.kind == "pickled_module" and isinstance(opened.model, nn.Sequential)


def test_python_source_with_weights(tmp_path: Path) -> None:
    code = tmp_path / "net.py"
    code.write_text("from torch import nn\ndef make():\n    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))\n")
    weights = tmp_path / "w.safetensors"
    mlp = build_demo("mlp", seed=3)
    save_file(dict(mlp.state_dict()), str(weights))
    opened = open_source(f"{code}:make", weights=str(weights))
    _same_values(opened.model, mlp)


def test_weights_that_do_not_fit_are_refused_in_one_line(tmp_path: Path) -> None:
    weights = tmp_path / "cnn.pt"
    torch.save(build_demo("cnn").state_dict(), weights)
    with pytest.raises(SourceError.__mro__[1]) as info:  # ParamscopeError
        open_source("demo:mlp", weights=str(weights))
    message = str(info.value)
    assert "\n" not in message and str(weights) in message
    assert "4 missing" in message and "16 unexpected" in message


def test_read_checkpoint_gives_aliases(tmp_path: Path) -> None:
    path = tmp_path / "shared.safetensors"
    save_model(build_demo("shared"), str(path))
    checkpoint = read_checkpoint(path)
    assert checkpoint.aliases == {"1.weight": "0.weight"}
    assert set(checkpoint.all_tensors()) == {"0.weight", "1.weight"}


def test_opened_modules_are_independent_working_modules(tmp_path: Path) -> None:
    # the tree's modules are made by copying a blank module's attributes (fast path): each must
    # own its containers and behave as nn.Module does (hooks, state_dict, to, named_modules)
    path = tmp_path / "m.safetensors"
    save_file({f"blocks.{i}.fc.weight": torch.full((2, 2), float(i)) for i in range(3)}, str(path))
    model = open_source(str(path)).model
    first, second = model.get_submodule("blocks.0"), model.get_submodule("blocks.1")
    assert first._parameters is not second._parameters and first._modules is not second._modules
    calls: list[str] = []
    first.fc.register_forward_pre_hook(lambda module, args: calls.append("hooked"))
    assert second.fc._forward_pre_hooks == {} and len(first.fc._forward_pre_hooks) == 1
    first.fc.register_buffer("scale", torch.ones(1))
    assert "scale" not in dict(second.fc.named_buffers())
    assert list(model.state_dict()) == [
        "blocks.0.fc.weight", "blocks.0.fc.scale", "blocks.1.fc.weight", "blocks.2.fc.weight"
    ]
    model.to(torch.float64)
    third = model.get_submodule("blocks.2.fc").weight
    assert third.dtype == torch.float64 and float(third.detach()[0, 0]) == 2.0
    assert [n for n, _ in model.named_modules()][:3] == ["", "blocks", "blocks.0"]


def test_awkward_dotted_names_each_find_one_place() -> None:
    from paramscope.core.files.statedict import Checkpoint, build_module

    sizes = {"a": 2, "a.b": 3, "a.c.d": 4, ".x": 5, "y..z": 6, "training": 7, "h.0.w": 8, "h.0": 9}
    root, notes = build_module(Checkpoint({n: torch.ones(k) for n, k in sizes.items()}))
    placed = {name: t.numel() for name, t in root.state_dict().items()}
    assert placed == {
        "a": 2, "a_.b": 3, "a_.c.d": 4, "_.x": 5, "y._.z": 6, "training_": 7, "h.0.w": 8, "h.0_": 9
    }
    # one note per renamed module (not per tensor under it), one per renamed tensor
    assert sum("part 'a' renamed 'a_'" in n for n in notes) == 1
    assert any("training: stored as 'training_'" in n for n in notes)
    assert any("h.0: stored as 'h.0_'" in n for n in notes)


def test_a_folder_whose_weights_are_in_subfolders_says_which(tmp_path: Path) -> None:
    """A diffusers pipeline keeps each model in a subfolder (unet/, vae/): the user is told which
    to open instead of "no weights file"."""
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    for part in ("unet", "vae"):
        (tmp_path / part).mkdir()
        save_file({"w": torch.ones(2)}, str(tmp_path / part / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text("{}")
    with pytest.raises(SourceError, match=r"diffusers pipeline \(model_index.json\) with no weights file of its own; the subfolder\(s\) unet, vae hold"):
        open_source(str(tmp_path))
    assert open_source(str(tmp_path / "vae")).model.state_dict()["w"].tolist() == [1.0, 1.0]
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(SourceError, match="is a folder without a weights file"):
        open_source(str(tmp_path))
    (tmp_path / "tf_model.h5").write_bytes(b"\x89HDF")
    (tmp_path / "flax_model.msgpack").write_bytes(b"\x80")
    with pytest.raises(SourceError, match=r"holds weights paramscope does not read \(flax_model.msgpack, tf_model.h5\)"):
        open_source(str(tmp_path))


def test_a_run_folder_names_its_checkpoints_in_step_order(tmp_path: Path) -> None:
    """A Trainer's output folder: checkpoint-500/, checkpoint-1000/, ... each a save_pretrained folder."""
    for step in (1000, 500, 1500):
        (tmp_path / f"checkpoint-{step}").mkdir()
        save_file({"w": torch.ones(2)}, str(tmp_path / f"checkpoint-{step}" / "model.safetensors"))
    with pytest.raises(SourceError) as raised:
        open_source(str(tmp_path))
    assert "the subfolder(s) checkpoint-500, checkpoint-1000, checkpoint-1500 hold weights" in str(raised.value)
    assert str(raised.value).endswith(f"(or all as a run: paramscope --series {tmp_path})")


def test_a_hugging_face_cache_snapshot_opens_through_its_links(tmp_path: Path) -> None:
    """~/.cache/huggingface/hub/models--org--name/snapshots/HASH/ holds links into ../../blobs/:
    its shards were refused as "pointing outside the checkpoint's folder"."""
    import os

    cnn = build_demo("cnn")
    (tmp_path / "made").mkdir()
    _write_sharded(tmp_path / "made", cnn, "safetensors")
    blobs, snapshot = tmp_path / "models--org--name" / "blobs", tmp_path / "models--org--name" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, made in enumerate(sorted((tmp_path / "made").iterdir())):
        made.rename(blobs / f"blob{i}")
        (snapshot / made.name).symlink_to(f"../../blobs/blob{i}")
    _same_values(open_source(str(snapshot)).model, cnn)
    # the repository's own folder (what a user finds in the cache) opens the snapshot refs/main names
    (snapshot.parent / "older").mkdir()
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    opened = open_source(str(snapshot.parent.parent))
    assert opened.path.parent == snapshot
    _same_values(opened.model, cnn)
    # a link to something that is not a regular file is still refused, in one line
    shard = next(p for p in snapshot.iterdir() if p.name.endswith(".safetensors"))
    shard.unlink()
    os.mkfifo(tmp_path / "fifo")
    shard.symlink_to(tmp_path / "fifo")
    with pytest.raises(SourceError, match=f"names shard '{shard.name}', which is not a regular file"):
        open_source(str(snapshot))


def test_a_model_id_opens_its_hugging_face_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``paramscope Qwen/Qwen2.5-0.5B`` after transformers downloaded it: the cached model, offline."""
    cnn = build_demo("cnn")
    cache = tmp_path / "hf" / "hub"
    snapshot = cache / "models--my-org--tiny.cnn" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    _write_sharded(snapshot, cnn, "safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    opened = open_source("my-org/tiny.cnn")
    assert opened.path.parent == snapshot
    _same_values(opened.model, cnn)
    assert opened.source == "my-org/tiny.cnn"  # the window's title, what Reopen opens
    assert opened.notes[0] == f"my-org/tiny.cnn from the Hugging Face cache: {snapshot}"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))  # huggingface_hub's order: this first
    with pytest.raises(SourceError) as raised:
        open_source("my-org/tiny.cnn")
    message = str(raised.value)
    assert message.startswith("my-org/tiny.cnn: no such file, and no model of that id in the Hugging Face cache")
    assert "hf download my-org/tiny.cnn" in message and str(tmp_path / "elsewhere") in message
    with pytest.raises(SourceError, match=r"^runs/last.ckpt: no such file$"):
        open_source("runs/last.ckpt")  # a missing file is not taken for a model id
    with pytest.raises(SourceError, match=r"^gtp2: no such file, and not demo:NAME, .* or a cached Hugging Face model id$"):
        open_source("gtp2")


def test_the_cache_is_where_huggingface_hub_looks(tmp_path: Path) -> None:
    """The same folder as ``huggingface_hub.constants.HF_HUB_CACHE`` under each setting."""
    import os
    import subprocess
    import sys

    pytest.importorskip("huggingface_hub")
    probe = "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)"
    mine = "from paramscope.core.sources.hub_ids import hub_cache; print(hub_cache())"
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME")}
    for extra in ({}, {"XDG_CACHE_HOME": str(tmp_path / "x")}, {"HF_HOME": str(tmp_path / "h")},
                  {"HF_HOME": str(tmp_path / "h"), "HF_HUB_CACHE": str(tmp_path / "c")}):  # fmt: skip
        found = [
            subprocess.run([sys.executable, "-c", code], env={**clean, **extra}, capture_output=True, text=True, check=True).stdout
            for code in (probe, mine)
        ]
        assert Path(found[0].strip()) == Path(found[1].strip()), extra
