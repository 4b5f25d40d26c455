"""No leftovers: temporaries of killed exports are recognised and removed by the next export.

A real export runs in a child process that stops in the middle of writing (a hook on the file
writer signals through a marker file and waits), is SIGKILLed, and leaves its temporary; the next
export into that folder removes it. Temporaries of live writers are never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from paramscope.core.files import atomic
from paramscope.core.files.atomic import (
    remove_stale_temporaries,
    temporary_prefix,
    write_atomically,
)
from paramscope.core.files.export import export_model
from paramscope.core.files.statedict import Checkpoint, build_module

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

# The child: a real export whose writer stops after its first write until it is killed.
CHILD = r"""
import sys, time
from pathlib import Path
import torch
from paramscope.core.files.atomic import UnbufferedFile
from paramscope.core.files.export import export_model

target, marker = Path(sys.argv[1]), Path(sys.argv[2])
real = UnbufferedFile._write_some

def stalled(self, view):
    written = real(self, view)
    marker.write_text(str(self.position))
    time.sleep(120)  # killed long before
    return written

UnbufferedFile._write_some = stalled
model = torch.nn.Linear(256, 256)
export_model(model, target)
"""


def _wait_for(path: Path, child: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else "child ended"
        assert time.monotonic() < deadline, "the child never reached its first write"
        time.sleep(0.02)


def _killed_export(target: Path, marker: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), str(marker)], env=env, stderr=subprocess.PIPE
    )
    try:
        _wait_for(marker, child)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if ".paramscope-" in p.name]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_killed_export_leaves_a_temporary_the_next_export_removes(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"model{suffix}"
    old = build_module(Checkpoint({"w": torch.arange(6.0)}))[0]
    export_model(old, target)
    before = target.read_bytes()
    _killed_export(target, tmp_path / "marker")
    left = _temporaries(tmp_path)
    assert len(left) == 1 and left[0].name.startswith(f".{target.name}.paramscope-")
    assert left[0].stat().st_size > 0
    assert target.read_bytes() == before  # the kill never touched the target

    new = build_module(Checkpoint({"w": torch.full((3,), 7.0)}))[0]
    export_model(new, target)
    assert _temporaries(tmp_path) == []
    loaded = load_file(str(target)) if suffix == ".safetensors" else torch.load(target, weights_only=True)
    assert torch.equal(loaded["w"], torch.full((3,), 7.0))


def test_an_export_to_another_file_of_the_folder_also_cleans_up(tmp_path: Path) -> None:
    _killed_export(tmp_path / "a.safetensors", tmp_path / "marker")
    assert len(_temporaries(tmp_path)) == 1
    save_file({"x": torch.ones(1)}, str(tmp_path / "unrelated.safetensors"))
    export_model(torch.nn.Linear(2, 2), tmp_path / "b.safetensors")
    assert _temporaries(tmp_path) == []
    assert (tmp_path / "unrelated.safetensors").exists()


def test_temporaries_of_live_writers_are_kept(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.05)  # its start time must come before the file's mtime (clock ticks)
        mine = tmp_path / f"{temporary_prefix(tmp_path / 'x.pt')}abc123.tmp.pt"
        theirs = tmp_path / f".y.pt.paramscope-{sleeper.pid}-Zq9_x.tmp.pt"
        for path in (mine, theirs):
            path.write_bytes(b"partial")
        write_atomically(tmp_path / "x.pt", lambda tmp: tmp.write_bytes(b"whole"))
        assert mine.exists() and theirs.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temporaries(tmp_path) == [theirs]  # now its writer is gone
    assert mine.exists()


def test_a_reused_pid_does_not_keep_an_old_temporary(tmp_path: Path) -> None:
    """The file was last written before the process now holding that pid started."""
    old = tmp_path / f".z.pt.paramscope-{os.getpid()}-old.tmp.pt"
    old.write_bytes(b"partial")
    started = atomic.process_start(os.getpid())
    if started is None:
        pytest.skip("no process start times on this platform")
    os.utime(old, (started - 3600, started - 3600))
    assert remove_stale_temporaries(tmp_path) == [old]


def test_only_paramscope_temporaries_of_regular_files_are_removed(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above Linux's pid_max default
    others = [
        tmp_path / f".model.pt.tmp-{dead}",  # not our name
        tmp_path / f".a.pt.paramscope-{dead}-abc.tmp.pt.keep",  # does not end as ours
        tmp_path / f"visible.paramscope-{dead}-abc.tmp",  # not hidden
    ]
    for path in others:
        path.write_bytes(b"x")
    link = tmp_path / f".l.pt.paramscope-{dead}-abc.tmp.pt"
    link.symlink_to(others[0])
    stale = tmp_path / f".m.safetensors.paramscope-{dead}-abc.tmp.safetensors"
    stale.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert all(p.exists() for p in others) and link.is_symlink()
