"""The atomic writer: check before fsync before rename; UnbufferedFile writes all, in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paramscope.core.files import atomic
from paramscope.core.files.atomic import UnbufferedFile, write_atomically


def test_unbuffered_file_writes_everything_in_order_through_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = UnbufferedFile._write_some
    monkeypatch.setattr(UnbufferedFile, "_write_some", lambda self, view: real(self, view[:333]))
    pieces = [bytes([i]) * (i * 97) for i in range(40)]
    path = tmp_path / "out.bin"
    with UnbufferedFile(path) as out:
        for piece in pieces:
            assert out.write(piece) == len(piece)
        out.flush()
    assert path.read_bytes() == b"".join(pieces)
    assert out.position == len(b"".join(pieces))


def test_unbuffered_file_truncates_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"x" * 100)
    with UnbufferedFile(path) as out:
        out.write(memoryview(b"abc"))
    assert path.read_bytes() == b"abc"


def test_unbuffered_file_keeps_the_first_failed_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.save wraps a failed write in its own error: the export reports the real one."""

    def disk_full(self: UnbufferedFile, view: memoryview) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(UnbufferedFile, "_write_some", disk_full)
    out = UnbufferedFile(tmp_path / "out.bin")
    with pytest.raises(OSError, match="No space"), out:
        out.write(b"abc")
    assert isinstance(out.error, OSError) and out.error.errno == 28
    assert out.fd == -1  # closed on the way out


def test_check_runs_before_fsync_and_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t.txt"
    order: list[str] = []
    real_fsync = atomic._fsync_file
    monkeypatch.setattr(atomic, "_fsync_file", lambda tmp: (order.append("fsync"), real_fsync(tmp)))

    def check(tmp: Path) -> None:
        assert not target.exists() and tmp.read_text() == "hi"
        order.append("check")

    write_atomically(target, lambda tmp: tmp.write_text("hi"), check)
    assert order == ["check", "fsync"] and target.read_text() == "hi"


@pytest.mark.parametrize("stage", ["write", "check", "fsync"])
def test_a_failure_at_any_stage_leaves_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")

    def fail(*_: object) -> None:
        raise OSError(5, "Input/output error")

    def write(tmp: Path) -> None:
        tmp.write_text("new")
        if stage == "write":
            fail()

    if stage == "fsync":
        monkeypatch.setattr(atomic, "_fsync_file", fail)
    with pytest.raises(OSError, match="Input/output"):
        write_atomically(target, write, fail if stage == "check" else None)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_replacing_a_named_pipe_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    target = tmp_path / "pipe"
    os.mkfifo(target)
    write_atomically(target, lambda tmp: tmp.write_text("file"))
    assert target.read_text() == "file"
