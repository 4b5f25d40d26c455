"""The many_tensors bench step runs and measures; a crash in it is reported, not taken for a figure."""

from __future__ import annotations

import json

import pytest
import torch

from paramscope.cli import bench_many
from paramscope.core.bench import bench


def _measured(row: dict) -> bool:
    return (
        row["pending"] is None
        and row["target"] not in ("", "-")
        and isinstance(row["ratio"], float)
        and row["ratio"] > 0
        and row["app_s"] > 0
        and row["baseline_s"] > 0
    )


def test_many_tensors_step_measures_both_formats() -> None:
    assert "many_tensors" in bench.STEPS
    rows = bench.run_isolated("many_tensors", quick=True, module=bench.STEP_MODULES["many_tensors"])
    assert [row.step for row in rows] == ["many_tensors", "many_tensors"]
    assert [".safetensors" in rows[0].name, ".pt" in rows[1].name] == [True, True]
    for row in rows:
        assert _measured(row.to_dict()), row
        assert row.peak_rss_mb and row.peak_rss_mb > 10
        assert "us per tensor" in (row.note or "")
        for stage in ("open", "report", "statistics", "JSON"):  # where the time goes
            assert f"{stage} " in row.note


def test_a_failing_inspect_is_reported_as_failed(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def broken(path: object) -> None:
        raise RuntimeError("inspect broke")

    monkeypatch.setattr(bench_many, "_inspect", broken)
    monkeypatch.setattr(bench_many, "QUICK_COUNT", 20)
    assert bench_many.main(["many_tensors", "--quick"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["pending"] == "failed: RuntimeError: inspect broke"
    assert not _measured(rows[0])


def test_the_checkpoint_is_nested_and_tiny() -> None:
    tensors = bench_many.many_tensors(30)
    assert list(tensors)[:2] == ["blocks.0.layers.0.weight", "blocks.0.layers.1.weight"]
    assert {tuple(t.shape) for t in tensors.values()} == {(3, 2), (2,)}
    assert all(t.dtype == torch.float32 for t in tensors.values())
