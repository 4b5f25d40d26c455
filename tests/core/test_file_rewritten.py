"""A checkpoint truncated or rewritten while it is open never kills the process.

A training job saving over the checkpoint being viewed is normal. A memory-mapped file that
shrinks kills its reader with SIGBUS, so each check runs in a fresh process: a crash shows as a
negative return code, not as a dead test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.core.errors import SourceError
from paramscope.core.files.regions import FileStamp, Region, read_regions

STATE = {f"layers.{i}.weight": torch.randn(256, 256) for i in range(4)}


def _write(path: Path) -> None:
    if path.suffix == ".safetensors":
        save_file(STATE, str(path))
    else:
        torch.save(STATE, path)


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


# Opens the file, truncates it in place (as torch.save over it does), then does what a user
# does next: statistics of every tensor, the values of one, an export of all.
AFTER_TRUNCATION = """
    import sys, torch
    from paramscope.core.edit.session import Session
    from paramscope.core.sources.sources import open_source
    from paramscope.core.model.model_statistics import compute_model_statistics
    from paramscope.core.files.export import export_model

    path, out = sys.argv[1], sys.argv[2]
    session = Session(open_source(path))
    with open(path, "r+b") as handle:
        handle.truncate(1000)
    compute_model_statistics(session.model, session.report, loader=session.opened.loader)
    first = session.values("layers.0.weight").sum().item()
    export_model(session.model, out)
    print(first, torch.load(out, weights_only=True)["layers.3.weight"].sum().item())
"""


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_after_opening_keeps_the_values_read(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"ckpt{suffix}"
    _write(path)
    done = _run(AFTER_TRUNCATION, str(path), str(tmp_path / "out.pt"))
    assert done.returncode == 0, done.stderr[-2000:]
    first, last = (float(x) for x in done.stdout.split())
    assert first == pytest.approx(STATE["layers.0.weight"].sum().item(), rel=1e-5)
    assert last == pytest.approx(STATE["layers.3.weight"].sum().item(), rel=1e-5)


LAZY_AFTER_TRUNCATION = """
    import sys
    from paramscope.core.errors import SourceError
    from paramscope.core.files import regions
    from paramscope.core.edit.session import Session
    from paramscope.core.sources.sources import open_source

    regions.LAZY_BYTES = 0  # read on demand, as for a checkpoint of many gigabytes
    session = Session(open_source(sys.argv[1]))
    session.values("layers.1.weight")
    with open(sys.argv[1], "r+b") as handle:
        handle.truncate(1000)
    try:
        session.values("layers.2.weight")
    except SourceError as exc:
        print(exc)
"""


def test_lazily_opened_file_truncated_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "big.safetensors"
    _write(path)
    done = _run(LAZY_AFTER_TRUNCATION, str(path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"{path}: changed on disk since it was opened (rewritten or truncated); reopen it"


def test_rewritten_between_stamp_and_read_is_refused(tmp_path: Path) -> None:
    """Same size, new contents (a save of the same shapes): the stamp tells them apart."""
    path = tmp_path / "w.bin"
    path.write_bytes(bytes(64))
    stamp = FileStamp.of(path)
    path.write_bytes(bytes(range(64)))
    region = Region(0, (16,), torch.float32)
    with pytest.raises(SourceError, match="changed on disk"):
        read_regions(path, stamp, [("w", region)])
    assert read_regions(path, FileStamp.of(path), [("w", region)])["w"].view(torch.uint8).tolist() == list(range(64))


def test_a_file_shorter_than_its_regions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.bin"
    path.write_bytes(bytes(10))
    with pytest.raises(SourceError, match="changed on disk"):
        read_regions(path, FileStamp.of(path), [("w", Region(0, (16,), torch.float32))])
