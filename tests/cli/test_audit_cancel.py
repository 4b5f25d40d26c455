"""``paramscope audit --scheduler local:2`` in a terminal: progress on stderr, and Ctrl+C (SIGINT
to the whole process group, as a terminal sends it) stops everything with one line."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from range_server import RangeServer
from safetensors.torch import save_file


def _read_until(master: int, out: bytearray, done: callable, deadline: float) -> None:
    while time.monotonic() < deadline and not done():
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the command ended
                return
            if not chunk:
                return
            out += chunk


@pytest.mark.slow
def test_ctrl_c_stops_the_cluster_with_one_line(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    g = torch.Generator().manual_seed(0)
    save_file({f"layers.{i}.weight": torch.randn(256, 256, generator=g) for i in range(40)}, str(tmp_path / "m.safetensors"))
    with RangeServer(tmp_path) as server:
        server.delay_s = 0.3  # a slow store: 8 parts of ~2 s each, on two workers
        master, slave = pty.openpty()
        env = dict(os.environ, PARAMSCOPE_CACHE_BYTES="0")
        command = [sys.executable, "-m", "paramscope", "audit", server.url("m.safetensors"), "--scheduler", "local:2"]
        process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=env)
        os.close(slave)
        out = bytearray()
        try:
            _read_until(master, out, lambda: b"of 8 parts done" in out, time.monotonic() + 240)
            assert b"of 8 parts done" in out, out.decode(errors="replace")[-2000:]
            workers = psutil.Process(process.pid).children(recursive=True)
            assert len(workers) >= 2
            os.killpg(process.pid, signal.SIGINT)  # Ctrl+C: every process of the terminal's group
            _read_until(master, out, lambda: process.poll() is not None, time.monotonic() + 60)
            assert process.wait(timeout=30) == 130
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            os.close(master)
    text = out.decode(errors="replace")
    assert "Traceback" not in text and "WARNING" not in text and "ERROR" not in text, text
    last = text.rstrip().rsplit("\r", 1)[-1].strip()  # the progress line is wiped before the message
    assert last == "paramscope: interrupted", text
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, alive  # no worker left behind


@pytest.mark.slow
def test_a_cancel_from_the_task_state_is_seen_while_parts_run(tmp_path: Path) -> None:
    """The API's (and a window's) cancel: checked while parts run, not only as they finish."""
    distributed = pytest.importorskip("distributed")
    from paramscope.core.errors import Cancelled
    from paramscope.core.runs.audit import audit
    from paramscope.core.tasks import TaskState

    g = torch.Generator().manual_seed(0)
    save_file({f"layers.{i}.weight": torch.randn(256, 256, generator=g) for i in range(40)}, str(tmp_path / "m.safetensors"))
    with (
        RangeServer(tmp_path) as server,
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
    ):

        def stall_then_cancel(fraction: float, message: str) -> None:
            server.delay_s = 60.0  # the client has read the header: from now on no part can finish
            state.cancel()

        state = TaskState(stall_then_cancel)
        start = time.monotonic()
        with pytest.raises(Cancelled):
            audit(server.url("m.safetensors"), cluster.scheduler_address, state=state)
        assert time.monotonic() - start < 30  # a part takes minutes now: the wait was not for one
