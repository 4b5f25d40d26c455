"""The many_tensors step of ``paramscope bench``: a checkpoint of 100,000 tiny tensors.

Run as ``python -m paramscope.cli.bench_many many_tensors [--quick]`` (a subprocess of the bench,
so its peak RSS is its own; --quick: 10,000 tensors). For a ``.safetensors`` and a ``.pt`` file of
tensors named like a model's (``blocks.{i}.layers.{j}.weight``, one container per tensor, the
worst case for the module tree), the app's whole ``paramscope inspect FILE --json`` (open, module
tree, report, statistics and histograms, JSON written to /dev/null) is timed against the least a
script doing the same by hand does: the library's loader (``safetensors.torch.load_file``,
``torch.load(weights_only=True)``) and a loop of ``min``/``max``/``mean``/``std`` per tensor. The
note says what that is per tensor. Target (issue 14): a few microseconds of Python per tensor; the
JSON alone writes ~40 floats per tensor (~15 us): <= 4x the hand-written loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

STEP = "many_tensors"
FULL_COUNT = 100_000
QUICK_COUNT = 10_000
TARGET = 4.0


def many_tensors(count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``count`` tiny float32 tensors in a nested hierarchy: ten per ``blocks.{i}``, shapes (2,)
    and (3, 2) alternating."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(count, 6, generator=generator)
    return {
        f"blocks.{k // 10}.layers.{k % 10}.weight": values[k, :2].clone() if k % 2 else values[k].reshape(3, 2).clone()
        for k in range(count)
    }


def _inspect(path: Path) -> None:
    from paramscope.cli import main

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if main(["inspect", str(path), "--json"]) != 0:
            raise RuntimeError(f"paramscope inspect {path.name} failed")


def _phases(path: Path) -> dict[str, float]:
    """Seconds of each stage of ``inspect --json``, as :func:`_inspect` runs them (one run, the
    collector off as the command has it): where a tensor's microseconds go."""
    import gc
    import time

    from paramscope.cli.json_out import print_json
    from paramscope.core.model.inspection import report_to_dict
    from paramscope.core.model.model_statistics import compute_model_statistics
    from paramscope.core.model.report import build_report
    from paramscope.core.sources.sources import open_source

    times: dict[str, float] = {}
    gc.disable()
    try:
        start = time.perf_counter()
        opened = open_source(str(path))
        times["open"] = time.perf_counter() - start
        report = build_report(opened.model)
        times["report"] = time.perf_counter() - start - sum(times.values())
        summaries = compute_model_statistics(opened.model, report, bins=32, loader=opened.loader)
        times["statistics"] = time.perf_counter() - start - sum(times.values())
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            print_json(report_to_dict(report, summaries, lazy=True))
        times["JSON"] = time.perf_counter() - start - sum(times.values())
    finally:
        gc.enable()
    return times


def _by_hand(tensors: dict[str, torch.Tensor]) -> None:
    for tensor in tensors.values():
        tensor.min(), tensor.max(), tensor.mean(), tensor.std()


def rows(quick: bool) -> list[object]:
    """One row per file format: the app's inspect --json against load-and-loop by hand."""
    from safetensors.torch import load_file, save_file

    from paramscope.core.bench.bench_rows import Row, _finish, compare

    count = QUICK_COUNT if quick else FULL_COUNT
    tensors = many_tensors(count)
    out = []
    with tempfile.TemporaryDirectory(prefix="paramscope-bench-") as folder:
        files = {
            ".safetensors": (lambda p: save_file(tensors, str(p)), lambda p: _by_hand(load_file(str(p))), "load_file"),
            ".pt": (lambda p: torch.save(tensors, p), lambda p: _by_hand(torch.load(p, weights_only=True)), "torch.load"),
        }
        for suffix, (write, by_hand, loader) in files.items():
            path = Path(folder) / f"many{suffix}"
            write(path)
            app_s, base_s = compare(lambda path=path: _inspect(path), lambda path=path, f=by_hand: f(path), 2)
            phases = ", ".join(f"{k} {v / count * 1e6:.1f}" for k, v in _phases(path).items())
            row = Row(
                STEP,
                f"inspect --json of {count:,} tiny tensors ({suffix}) vs {loader} + min/max/mean/std each",
                f"<= {TARGET:g}x",
                TARGET,
                note=f"app {app_s / count * 1e6:.0f} us per tensor ({phases}), by hand "
                f"{base_s / count * 1e6:.0f} us (one torch thread; the app writes ~40 floats of JSON per tensor)",
            )
            out.append(_finish(row, app_s, base_s))
            path.unlink()
    return out


def main(argv: list[str]) -> int:
    from paramscope.core.bench.bench_rows import Row, peak_rss_mb

    torch.set_num_threads(1)  # as the bench's other steps
    try:
        found = rows("--quick" in argv)
    except Exception as exc:
        found = [Row(STEP, STEP, "-", pending=f"failed: {type(exc).__name__}: {exc}")]
    peak = peak_rss_mb()
    for row in found:
        row.peak_rss_mb = peak  # type: ignore[attr-defined]
        print(json.dumps(row.to_dict()), flush=True)  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":  # python -m paramscope.cli.bench_many many_tensors [--quick]
    raise SystemExit(main(sys.argv[1:]))
