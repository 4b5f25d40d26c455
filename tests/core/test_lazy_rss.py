"""Browsing a checkpoint far larger than what it reads keeps memory bounded.

The checkpoint is a sparse safetensors file (the bytes are holes, so it costs no disk and is
made at once), sized by ``PARAMSCOPE_RSS_CHECK_GB`` (default 4). To check a file larger than
this machine's memory, run for example::

    PARAMSCOPE_RSS_CHECK_GB=64 python -m pytest tests/core/test_lazy_rss.py -q

Each check runs in a fresh process and reads its peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GIB = 1 << 30
TENSOR_BYTES = 256 << 20  # each tensor: 64M float32 values
BUDGET = GIB  # the bound: under 1 GB plus the tensor looked at


def _sparse_safetensors(path: Path, total_bytes: int) -> list[str]:
    count = max(2, total_bytes // TENSOR_BYTES)
    header: dict[str, object] = {}
    names = []
    for i in range(count):
        name = f"layers.{i}.weight"
        names.append(name)
        header[name] = {
            "dtype": "F32",
            "shape": [TENSOR_BYTES // 4 // 4096, 4096],
            "data_offsets": [i * TENSOR_BYTES, (i + 1) * TENSOR_BYTES],
        }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)))
        handle.write(raw)
        handle.truncate(8 + len(raw) + count * TENSOR_BYTES)  # a hole: no disk, reads as zeros
    return names


PROBE = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    torch.set_num_threads(1)
    from paramscope.core.edit.session import Session
    from paramscope.core.sources.sources import open_source

    session = Session(open_source(sys.argv[1]))
    names = list(session.report.parameters)
    assert session.stats_on_demand
    summary = session.ensure_summary(names[len(names) // 2])  # histogram one tensor
    print(json.dumps({
        "tensors": len(names),
        "max": summary.stats.max,
        "count": int(summary.histogram.counts.sum()),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))
    """
)


@pytest.mark.slow
def test_browsing_a_multi_gigabyte_checkpoint_reads_only_the_selected_tensor(tmp_path: Path) -> None:
    size = int(float(os.environ.get("PARAMSCOPE_RSS_CHECK_GB", "4")) * GIB)
    path = tmp_path / "huge.safetensors"
    names = _sparse_safetensors(path, size)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["tensors"] == len(names)
    assert result["max"] == 0.0 and result["count"] == TENSOR_BYTES // 4
    assert result["peak_rss"] < BUDGET + TENSOR_BYTES, f"peak RSS {result['peak_rss'] / GIB:.2f} GiB"
