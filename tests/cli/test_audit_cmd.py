"""``paramscope audit``: on a Dask LocalCluster of worker processes, bit-identical to the local path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.cli import main


def _checkpoint(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    tensors = {f"layers.{i}.weight": torch.randn(300, 200, generator=g) for i in range(6)}
    tensors["odd"] = torch.tensor([1.0, float("nan"), float("inf"), -2.0])
    tensors["steps"] = torch.arange(10, dtype=torch.int64)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    return path


@pytest.mark.slow
def test_a_local_cluster_gives_the_local_numbers_bit_for_bit(tmp_path: Path, capsys) -> None:
    pytest.importorskip("distributed")
    path = _checkpoint(tmp_path)
    assert main(["audit", str(path), "--json"]) == 0
    here = json.loads(capsys.readouterr().out)["sources"]
    assert main(["audit", str(path), "--json", "--scheduler", "local:2"]) == 0
    there = json.loads(capsys.readouterr().out)["sources"]
    assert there == here  # every statistic and bar, exactly
    assert here[str(path)]["odd"]["stats"]["nan"] == 1


def test_without_a_scheduler_nothing_of_dask_is_imported(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    code = (
        "import sys; from paramscope.cli import main\n"
        f"assert main(['audit', {str(path)!r}]) == 0\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "layers.5.weight" in result.stdout


def test_a_job_makes_one_choice_of_loops_whatever_this_process_loaded_before() -> None:
    """The compiled loops round differently from torch's; a worker that never loaded them must
    still give this process's numbers, so a job's policy overrides what an earlier job loaded."""
    from paramscope.core.model import kernels
    from paramscope.core.model.tensor_stats import tensor_stats

    if not kernels.load():
        pytest.skip("numba is not usable here")
    code = (
        f"import torch\ntorch.set_num_threads({torch.get_num_threads()})\n"  # torch sums per thread
        "from paramscope.core.model.tensor_stats import tensor_stats\n"
        "x = torch.randn(300_001, generator=torch.Generator().manual_seed(3))\n"
        "print(repr(tensor_stats(x).std), repr(tensor_stats(x).mean))\n"
    )
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    x = torch.randn(300_001, generator=torch.Generator().manual_seed(3))
    with kernels.policy(False):
        here = tensor_stats(x)
    assert [repr(here.std), repr(here.mean)] == fresh
