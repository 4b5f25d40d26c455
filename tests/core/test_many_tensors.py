"""Many tiny tensors: 100,000 of them open and inspect correctly (the batched statistics included)."""

from __future__ import annotations

import gc
import json
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from paramscope.core.files.module_tree import build_module
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.model.inspection import Entries, inspect_model, report_to_dict
from paramscope.core.model.model_statistics import (
    compute_model_statistics,
    summarize,
    summarize_small,
)
from paramscope.core.model.report import build_report, storage_address, walk_modules
from paramscope.core.sources.sources import open_source


def _many(count: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    out: dict[str, torch.Tensor] = {}
    for i in range(count // 10):
        for j in range(10):
            out[f"blocks.{i}.layers.{j}.weight"] = torch.randn(3, 2) if j % 2 else torch.randn(2)
    out["blocks.0.layers.0.weight"] = torch.full((2,), 0.25)  # a constant
    out["blocks.0.layers.2.weight"] = torch.tensor([1.0, float("nan")])  # NaN: the single pass
    out["blocks.0.layers.4.weight"] = torch.tensor([1e30])  # one value a widened range cannot split
    out["blocks.0.layers.6.weight"] = torch.tensor([0, 1]).to(torch.bfloat16)  # not batched
    return out


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])  # .pt: built from the pickle's scan
def test_100k_tensors_open_and_inspect_like_torch(tmp_path: Path, suffix: str) -> None:
    tensors = _many(100_000)
    path = tmp_path / f"many{suffix}"
    if suffix == ".pt":
        torch.save(tensors, path)
    else:
        save_file(tensors, str(path))
    model = open_source(str(path)).model
    data = inspect_model(model, bins=32)
    assert len(data["parameters"]) == 100_000 and len(data["buffers"]) == 0
    assert data["unique_params"] == sum(t.numel() for t in tensors.values())
    entries = {p["name"]: p for p in data["parameters"]}
    root = next(m for m in data["modules"] if m["name"] == "")
    assert root["total_params"] == data["unique_params"]
    block = next(m for m in data["modules"] if m["name"] == "blocks.7")
    assert block["total_params"] == 5 * 2 + 5 * 6
    for name in ("blocks.5.layers.3.weight", "blocks.9999.layers.8.weight", "blocks.0.layers.0.weight"):
        values = tensors[name].double()
        stats = entries[name]["stats"]
        assert stats["min"] == values.min().item() and stats["max"] == values.max().item()
        assert stats["mean"] == pytest.approx(values.mean().item(), rel=1e-12, abs=1e-15)
        assert stats["norm"] == pytest.approx(values.norm().item(), rel=1e-12)
        assert stats["std"] == pytest.approx(values.std().item() if values.numel() > 1 else 0.0, rel=1e-9, abs=1e-15)
        counts, edges = np.histogram(values.numpy(), bins=32, range=(stats["min"], stats["max"]) if stats["min"] != stats["max"] else None)
        assert entries[name]["histogram"]["counts"] == counts.tolist()
    assert entries["blocks.0.layers.2.weight"]["stats"]["nan"] == 1
    assert entries["blocks.0.layers.4.weight"]["stats"]["max"] == float(torch.tensor(1e30))


def test_batched_summaries_equal_the_single_tensor_ones() -> None:
    torch.manual_seed(1)
    tensors = [torch.randn(int(n)) * scale for n, scale in zip(torch.randint(1, 200, (300,)), [1e-30, 1.0, 1e30] * 100, strict=True)]
    # a value on an edge whose estimated bar is one off (numpy's correction step moves it)
    tensors += [torch.tensor([-1.6875, 2.8125, 0.5625, -1.0, -0.375])]
    tensors += [torch.full((5,), 3.0), torch.arange(8.0) / 7, torch.tensor([0.0, -0.0, 2.0]), torch.tensor([1e30])]
    tensors += [torch.tensor([1.0, float("inf")])]
    for bins in (None, 1, 7, 14, 32):
        batched = summarize_small(tensors, bins)
        assert batched[-1] is None and batched[-2] is None  # Inf; a zero-width bar: single pass
        for tensor, got in zip(tensors[:-2], batched[:-2], strict=True):
            want = summarize(tensor, bins)
            assert got is not None
            assert np.array_equal(got.histogram.edges, want.histogram.edges)
            assert np.array_equal(got.histogram.counts, want.histogram.counts)
            for field in ("numel", "finite", "min", "max", "zero_fraction", "nan", "posinf", "neginf", "note"):
                assert getattr(got.stats, field) == getattr(want.stats, field), field
            for field in ("mean", "std", "norm"):
                assert getattr(got.stats, field) == pytest.approx(getattr(want.stats, field), rel=1e-13, abs=1e-300)


def test_the_module_walk_matches_torch_on_shared_and_deep_models() -> None:
    shared = torch.nn.Linear(2, 2)
    model = torch.nn.Sequential(shared, torch.nn.Sequential(shared, torch.nn.ReLU()), torch.nn.LayerNorm(2))
    assert [(n, id(m)) for n, m in walk_modules(model)] == [
        (n, id(m)) for n, m in model.named_modules(remove_duplicate=False)
    ]
    report = build_report(model)
    assert report.modules[""].total_params == 6 + 4  # the shared Linear counted once
    assert report.modules["1"].total_params == 6


def test_containers_make_their_hook_tables_only_when_used() -> None:
    """A container of a checkpoint holds no hook tables until torch or the user needs one (a
    million containers, ~1.6 KB each), and then every hook kind works as on any module."""
    checkpoint = Checkpoint({f"m{i}.weight": torch.ones(2) for i in range(2000)})
    warm, _ = build_module(checkpoint)
    before = len(gc.get_objects())
    root, _ = build_module(checkpoint)
    assert warm is not root and (len(gc.get_objects()) - before) / 2000 < 6  # 17 with eager tables
    module = root.get_submodule("m1")
    assert "_forward_hooks" not in vars(module) and "_state_dict_hooks" not in vars(module)
    calls: list[str] = []
    module.register_state_dict_post_hook(lambda *args: calls.append("state_dict"))
    module.register_load_state_dict_post_hook(lambda *args: calls.append("load"))
    module.register_buffer("scale", torch.ones(1), persistent=False)
    assert list(module.state_dict()) == ["weight"] and calls == ["state_dict"]
    module.load_state_dict({"weight": torch.zeros(2)})
    assert calls == ["state_dict", "load"] and float(module.weight.detach().sum()) == 0.0
    copy = deepcopy(root)
    assert list(copy.get_submodule("m1").state_dict()) == ["weight"] and len(calls) == 3
    with pytest.raises(AttributeError):
        _ = module.no_such_attribute


def _write_in_order(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file with the tensors in this order, packed (the library aligns them)."""
    names = {torch.uint8: "U8", torch.float32: "F32"}
    header: dict[str, object] = {}
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    data = b"".join(t.contiguous().numpy().tobytes() for t in tensors.values())
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def test_small_tensors_read_together_keep_their_own_memory(tmp_path: Path) -> None:
    """Small tensors are read many per read, each over its own bytes: values as the library reads
    them (an unaligned one included), no two of them tied, an edit of one leaves its neighbours."""
    tensors = {"a.flag": torch.tensor([7], dtype=torch.uint8), "b.x": torch.tensor([1.5, -2.0])}  # b.x at 1
    tensors |= {f"c.{i}.w": torch.full((2, 3), float(i)) for i in range(50)}
    tensors["d.big"] = torch.arange(40_000.0)  # over the small size: read on its own
    tensors["e.tail"] = torch.ones(3)
    path = tmp_path / "mixed.safetensors"
    _write_in_order(path, tensors)
    model = open_source(str(path)).model
    state = model.state_dict()
    for name, tensor in load_file(str(path)).items():
        assert torch.equal(state[name], tensor) and state[name].shape == tensor.shape, name
    assert build_report(model).tied_groups == []
    with torch.no_grad():
        model.get_submodule("c.3").w.add_(1.0)
    assert float(model.get_submodule("c.2").w.detach().sum()) == 12.0
    assert float(model.get_submodule("c.4").w.detach().sum()) == 24.0


def test_storage_address_is_the_storage_start() -> None:
    base = torch.arange(12.0)
    for tensor in (base, base[3:7], base.view(3, 4)[1:, 2:], torch.empty(0), base[5:5], torch.ones(()).int()):
        storage = tensor.untyped_storage()
        want = storage.data_ptr() if storage.nbytes() else None
        assert storage_address(tensor) == want


def test_streamed_json_is_the_listed_json(tmp_path: Path) -> None:
    from paramscope.cli.json_out import _json_text

    model = build_module(Checkpoint({**_many(100), "bn.running_mean": torch.zeros(3)}))[0]
    report = build_report(model)
    summaries = compute_model_statistics(model, report, bins=8)
    lazy = report_to_dict(report, summaries, lazy=True)
    assert isinstance(lazy["parameters"], Entries) and len(lazy["parameters"]) == 100
    assert lazy["parameters"][-1] == lazy["parameters"][-2:][1]
    assert _json_text(lazy) == _json_text(report_to_dict(report, summaries))


def test_small_storages_of_a_pt_read_ahead_keep_torchs_ties(tmp_path: Path) -> None:
    """A .pt's small storages are read many per read: values as torch.load gives them, a storage
    two tensors share stays one (a tie), distinct ones stay apart."""
    shared = torch.arange(6.0)
    tensors = {f"c.{i}.w": torch.full((2, 3), float(i)) for i in range(40)}
    tensors |= {"s.a": shared[:3], "s.b": shared[3:], "big.w": torch.arange(40_000.0), "i.n": torch.tensor([3, 4])}
    path = tmp_path / "mixed.pt"
    torch.save(tensors, path)
    model = open_source(str(path)).model
    state = model.state_dict()
    for name, tensor in torch.load(path, weights_only=True).items():
        assert torch.equal(state[name], tensor), name
    groups = build_report(model).tied_groups
    assert [(g.kind, set(g.names)) for g in groups] == [("shared storage", {"s.a", "s.b"})]
    with torch.no_grad():
        model.get_submodule("c.3").w.add_(1.0)
    assert float(model.get_submodule("c.4").w.detach().sum()) == 24.0
