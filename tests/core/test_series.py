"""A run's checkpoints over time (core): order by step, per tensor and per module numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.core.errors import SourceError
from paramscope.core.model.tensor_stats import tensor_stats
from paramscope.core.runs.series import compute_series, find_checkpoints, ordered, step_of


@pytest.mark.parametrize(
    ("spec", "step"),
    [
        ("ckpts/step-100.safetensors", 100),
        ("run/checkpoint-500/model.safetensors", 500),
        ("lightning/epoch=3-step=1000.ckpt", 1000),
        ("out/model_7.pt", 7),
        ("out/final.pt", None),
        ("s3://bucket/run/global_step20/", 20),
    ],
)
def test_step_from_names(spec: str, step: int | None) -> None:
    assert step_of(spec) == step


def test_order_is_by_step_not_by_text() -> None:
    assert ordered(["a/step-200.pt", "a/step-30.pt", "a/step-1000.pt"]) == (
        ["a/step-30.pt", "a/step-200.pt", "a/step-1000.pt"],
        [30, 200, 1000],
    )
    assert ordered(["b.pt", "a.pt"]) == (["b.pt", "a.pt"], [None, None])  # no steps: as given


def _run(tmp_path: Path) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, generator=g)
    steps = []
    for i, step in enumerate((10, 20, 30)):
        w = w + 0.1 * torch.randn(8, 4, generator=g)
        tensors = {"layer.weight": w.clone(), "layer.bias": torch.full((8,), float(i))}
        if step == 20:
            tensors["head.weight"] = torch.tensor([1.0, float("nan"), float("inf")])
        save_file(tensors, str(tmp_path / f"step-{step}.safetensors"))
        steps.append(tensors)
    return steps


def test_numbers_per_tensor_and_module(tmp_path: Path) -> None:
    steps = _run(tmp_path)
    series = compute_series([str(tmp_path / "step-*.safetensors")])
    assert series.steps == [10, 20, 30]
    rows = {r.name: r for r in series.tensors}
    weight = rows["layer.weight"].points
    w0, w1, w2 = (s["layer.weight"].double() for s in steps)
    assert weight[0].rel_prev is None and weight[0].norm == pytest.approx(float(w0.norm()))
    assert weight[1].rel_prev == pytest.approx(float((w1 - w0).norm() / w0.norm()))
    assert weight[2].rel_prev == pytest.approx(float((w2 - w1).norm() / w1.norm()))
    assert weight[2].rel_first == pytest.approx(float((w2 - w0).norm() / w0.norm()))
    assert weight[2].max_abs == pytest.approx(float(w2.abs().max()))
    assert rows["layer.bias"].points[1].rel_prev == math.inf  # from all zeros
    head = rows["head.weight"].points
    assert head[0] is None and head[2] is None and (head[1].nan, head[1].inf) == (1, 1)
    layer = {r.name: r for r in series.modules}["layer"].points[2]
    both = torch.cat([steps[2]["layer.weight"].reshape(-1), steps[2]["layer.bias"]])
    assert layer.norm == pytest.approx(float(both.double().norm()))
    assert layer.std == pytest.approx(tensor_stats(both).std)
    before = torch.cat([steps[1]["layer.weight"].reshape(-1), steps[1]["layer.bias"]]).double()
    assert layer.rel_prev == pytest.approx(float((both.double() - before).norm() / before.norm()))


def test_a_folder_is_a_run_and_one_checkpoint_is_not(tmp_path: Path) -> None:
    _run(tmp_path)
    assert [Path(p).name for p in find_checkpoints([str(tmp_path)])] == [
        "step-10.safetensors", "step-20.safetensors", "step-30.safetensors"
    ]
    with pytest.raises(SourceError, match="two checkpoints or more"):
        find_checkpoints([str(tmp_path / "step-10.safetensors")])
    with pytest.raises(SourceError, match="matches no file"):
        find_checkpoints([str(tmp_path / "nothing-*.pt"), str(tmp_path / "step-10.safetensors")])


def test_remote_checkpoints_by_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from range_server import RangeServer

    monkeypatch.setenv("PARAMSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    _run(tmp_path)
    with RangeServer(tmp_path) as server:
        urls = [server.url(f"step-{s}.safetensors") for s in (30, 10, 20)]
        series = compute_series(urls)
    local = compute_series([str(tmp_path)])
    assert series.steps == [10, 20, 30]
    assert [r.to_dict()["steps"] for r in series.tensors] == [r.to_dict()["steps"] for r in local.tensors]
