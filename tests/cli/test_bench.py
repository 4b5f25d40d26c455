"""`paramscope bench --quick --json` runs every step, and every step measures: none may crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from paramscope.core.bench import bench, bench_files, bench_remote, bench_rows, bench_steps
from paramscope.core.bench.bench import STEPS
from paramscope.core.bench.bench_model import QUICK, build_gpt2, parameter_count
from paramscope.core.bench.bench_remote import STEPS as REMOTE_STEPS


def _assert_measured(row: dict) -> None:
    """A row with a figure and its target: not a crashed step, not a failed measurement."""
    assert row["pending"] is None, row
    assert not (row["note"] or "").startswith("failed"), row
    assert row["target"] and row["target"] != "-", row
    if row["value"] is None:
        assert isinstance(row["ratio"], float) and row["ratio"] > 0, row
        assert row["app_s"] > 0 and row["baseline_s"] > 0, row


@pytest.fixture(scope="module")
def quick_bench() -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "bench", "--quick", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_step_reports_rows(quick_bench: dict) -> None:
    steps = {row["step"] for row in quick_bench["rows"]}
    assert steps == set(STEPS)


def test_every_row_is_measured(quick_bench: dict) -> None:
    for row in quick_bench["rows"]:
        _assert_measured(row)
        assert row["peak_rss_mb"] and row["peak_rss_mb"] > 10, row


def _crash(ctx: bench_rows.Context) -> list[bench_rows.Row]:
    raise RuntimeError("boom")


def test_a_crashed_step_is_not_taken_for_a_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above must fail on what a crashing step reports (it once accepted "failed")."""
    monkeypatch.setitem(bench.STEP_FUNCTIONS, "statistics", _crash)
    rows = bench.run_step("statistics", quick=True)
    assert [row.pending for row in rows] == ["failed: RuntimeError: boom"]
    with pytest.raises(AssertionError):
        _assert_measured(rows[0].to_dict())


def test_a_crashed_remote_step_is_not_taken_for_a_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(quick: bool, repeats: int) -> list[bench_rows.Row]:
        raise OSError("server gone")

    monkeypatch.setitem(bench_remote.STEP_FUNCTIONS, "remote_open", crash)
    rows = bench_remote.run_step("remote_open", quick=True)
    assert [row.pending for row in rows] == ["failed: OSError: server gone"]
    with pytest.raises(AssertionError):
        _assert_measured(rows[0].to_dict())


def test_remote_rows_judge_seconds_or_the_tensors_share(quick_bench: dict) -> None:
    rows = {row["step"]: row for row in quick_bench["rows"] if row["step"] in REMOTE_STEPS}
    assert set(rows) == set(REMOTE_STEPS)
    assert rows["remote_open"]["target"] == "< 2 s" and rows["remote_open"]["ok"] is (rows["remote_open"]["app_s"] <= 2.0)
    tensor = next(row for row in quick_bench["rows"] if row["step"] == "remote_tensor")
    assert tensor["ok"] is (tensor["ratio"] <= tensor["limit"]) and "of the shard's bytes" in tensor["note"]
    assert "bit-identical" in rows["audit_cluster"]["note"]


def test_a_failed_initializer_row_is_not_taken_for_a_measurement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from paramscope.core.init import rules

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("broken rule")

    monkeypatch.setattr(rules, "apply_rules", broken)
    monkeypatch.setattr(bench_steps, "INITIALIZERS", {"zeros_": ({}, False)})
    rows = bench.run_step("initializers", quick=True)
    assert rows[0].note == "failed: RuntimeError: broken rule"
    with pytest.raises(AssertionError):
        _assert_measured(rows[0].to_dict())


def test_ratios_come_with_their_targets(quick_bench: dict) -> None:
    by_name = {row["name"]: row for row in quick_bench["rows"]}
    stats = next(
        row
        for name, row in by_name.items()
        if name.startswith("statistics + histograms vs one read")
    )
    assert stats["target"] == "<= 8x"
    # judged against the target, not asserted (no timing tests)
    assert stats["ok"] is (stats["ratio"] <= 8.0)


def test_text_output_names_targets() -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "bench", "--quick", "--step", "statistics"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    assert "target <= 8x" in done.stdout
    assert "numpy.histogram" in done.stdout


def test_the_full_model_is_gpt2_small_sized() -> None:
    # Built on the meta device: the shapes of the real one, no memory.
    import torch

    from paramscope.core.bench.bench_model import GPT2

    with torch.device("meta"):
        model = GPT2()
    assert 124_000_000 < parameter_count(model) < 125_000_000
    assert model.lm_head.weight is model.wte.weight
    small = build_gpt2(QUICK)
    assert small(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, QUICK.vocab)


def test_export_rows_say_where_they_wrote(tmp_path) -> None:
    env = dict(os.environ, PARAMSCOPE_BENCH_EXPORT_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "paramscope.core.bench.bench", "export", "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    targeted = [row for row in rows if row["target"] == "<= 1.5x"]
    synced = [row for row in rows if "--sync" in row["name"]]
    assert len(targeted) == 2 and len(synced) == 2
    for row in rows:
        _assert_measured(row)
    for row in targeted:  # over the target, the note says why
        assert row["note"] == f"both write to {tmp_path}" + (
            f"; {bench_files.OVER_TARGET_NOTE}" if row["ok"] is False else ""
        )
    assert all("wait for its disk" in row["note"] for row in synced)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_an_export_row_over_its_target_says_the_verify_is_in_its_time(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_files, "compare", lambda *args, **kwargs: (3.0, 1.0))
    ctx = bench_rows.Context(build_gpt2(QUICK), QUICK, quick=True, repeats=1, tmp=tmp_path)
    rows = bench_files._export_rows(ctx, tmp_path)
    targeted = [row for row in rows if row.limit is not None]
    assert len(targeted) == 2
    for row in targeted:
        assert (
            row.ok is False
            and row.note == f"both write to {tmp_path.parent}; {bench_files.OVER_TARGET_NOTE}"
        )
