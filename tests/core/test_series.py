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


@pytest.mark.parametrize("magnitude", [1e200, 1e-200, 1e307])
def test_values_whose_squares_leave_float64_move_by_their_true_ratios(tmp_path: Path, magnitude: float) -> None:
    """A module of values near 1e200 stopped the series with "unexpected error: OverflowError"
    (a Python float squared); squared norms made every change NaN past 1e154 and 0 below 1e-154."""
    g = torch.Generator().manual_seed(1)
    a, bias = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    steps = [(a, bias), (a * 0.5, bias * 2), (a * -0.25, bias)]
    for step, (w, b) in enumerate(steps):
        save_file({"m.weight": w * magnitude, "m.bias": b * magnitude}, str(tmp_path / f"step-{step}.safetensors"))
    series = compute_series([str(tmp_path / "step-*.safetensors")])
    rows = {r.name: r for r in series.tensors}
    assert [p.rel_prev for p in rows["m.weight"].points] == [None, pytest.approx(0.5), pytest.approx(1.5)]
    assert [p.rel_first for p in rows["m.bias"].points] == [None, pytest.approx(1.0), pytest.approx(0.0)]
    module = {r.name: r for r in series.modules}["m"].points
    for step in (1, 2):  # pooled: the same numbers at scale 1, times the magnitude where they scale
        w, b = steps[step]
        pw, pb = steps[step - 1]
        both, before = torch.cat([w.reshape(-1), b]), torch.cat([pw.reshape(-1), pb])
        assert module[step].rel_prev == pytest.approx(float((both - before).norm() / before.norm()), rel=1e-12)
        assert module[step].std == pytest.approx(float(both.std()) * magnitude, rel=1e-12)
        assert module[step].mean == pytest.approx(float(both.mean()) * magnitude, rel=1e-12)


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
