"""Many tiny tensors: 100,000 of them open and inspect correctly (the batched statistics included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from paramscope.core.inspection import inspect_model
from paramscope.core.model_statistics import summarize, summarize_small
from paramscope.core.report import build_report, walk_modules
from paramscope.core.sources import open_source


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
