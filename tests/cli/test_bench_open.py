"""The gui_open_many bench step measures the window opening many tensors against a small file;
a failure in it is reported as failed, not taken for a figure."""

from __future__ import annotations

import json

import pytest

from paramscope.cli import bench_open
from paramscope.core.bench import bench


def _row(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_step_measures_the_stall_against_a_small_file(qapp, capsys) -> None:
    assert "gui_open_many" in bench.STEPS and bench.STEP_MODULES["gui_open_many"] == "paramscope.cli.bench_open"
    assert bench_open.main(["gui_open_many", "--tensors", "600"]) == 0
    row = _row(capsys)
    assert row["pending"] is None and row["step"] == "gui_open_many" and "600 tiny tensors" in row["name"]
    assert row["value"] == f"{row['app_s'] * 1000:.0f} ms" and row["app_s"] > 0 and row["baseline_s"] > 0
    assert row["ratio"] == pytest.approx(row["app_s"] * 1000 / bench_open.TARGET_MS)
    assert "baseline: 100 such tensors" in row["note"] and row["peak_rss_mb"] > 10


def test_a_window_that_never_shows_the_statistics_is_reported_as_failed(qapp, capsys, monkeypatch) -> None:
    def never(window, path, timeout_s=600.0):
        raise TimeoutError(f"{path.name}: statistics not shown after {timeout_s:.0f} s")

    monkeypatch.setattr(bench_open, "measure_open", never)
    assert bench_open.main(["gui_open_many", "--tensors", "10"]) == 0
    row = _row(capsys)
    assert row["pending"] == "failed: TimeoutError: small.safetensors: statistics not shown after 600 s"
    assert row["value"] is None and row["ok"] is None


def test_the_step_leaves_the_users_recent_files_and_layout_alone(tmp_path) -> None:
    """Each bench run added its two temporary files to File > Recent files and saved the
    offscreen window's layout over the user's."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    command = [sys.executable, "-m", "paramscope.cli.bench_open", "gui_open_many", "--tensors", "200"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[-1])["pending"] is None, done.stderr[-2000:]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []
