"""The atomic writer: check before fsync before rename; WritebackFile writes all, in order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paramscope.core import atomic
from paramscope.core.atomic import WritebackFile, start_writeback, write_atomically


def test_writeback_file_writes_everything_and_starts_writeback_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[int, int]] = []
    monkeypatch.setattr(atomic, "WRITEBACK_CHUNK", 1000)
    monkeypatch.setattr(atomic, "start_writeback", lambda fd, off=0, n=0: started.append((off, n)))
    real = WritebackFile._write_some
    monkeypatch.setattr(WritebackFile, "_write_some", lambda self, view: real(self, view[:333]))
    pieces = [bytes([i]) * (i * 97) for i in range(40)]
    path = tmp_path / "out.bin"
    with WritebackFile(path) as out:
        for piece in pieces:
            assert out.write(piece) == len(piece)
        out.flush()
    data = b"".join(pieces)
    assert path.read_bytes() == data
    # finished stretches of about a chunk each, back to back, then the tail (0: to the end)
    assert started[-1] == (sum(n for _, n in started[:-1]), 0)
    offsets = [0]
    for off, n in started[:-1]:
        assert off == offsets[-1] and n >= 1000
        offsets.append(off + n)


def test_writeback_file_truncates_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"x" * 100)
    with WritebackFile(path) as out:
        out.write(memoryview(b"abc"))
    assert path.read_bytes() == b"abc"


def test_start_writeback_is_only_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    try:
        start_writeback(fd)
    finally:
        os.close(fd)
    start_writeback(fd)  # a closed descriptor: no error, the final fsync reports real ones


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


def test_a_large_replaced_file_is_freed_off_the_callers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "big.bin"
    target.write_bytes(b"old" * 100)
    monkeypatch.setattr(atomic, "RELEASE_IN_BACKGROUND", 200)
    held: list[bytes] = []

    def release(fd: int) -> None:
        held.append(os.pread(fd, 3, 0))  # still the old file, though no longer named
        os.close(fd)

    monkeypatch.setattr(atomic, "_release_in_background", release)
    write_atomically(target, lambda tmp: tmp.write_bytes(b"new"))
    assert target.read_bytes() == b"new"
    assert held == ([] if os.name == "nt" else [b"old"])
    write_atomically(target, lambda tmp: tmp.write_bytes(b"small"))  # below the size: plain
    assert len(held) == len([] if os.name == "nt" else [b"old"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_replacing_a_named_pipe_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    target = tmp_path / "pipe"
    os.mkfifo(target)
    write_atomically(target, lambda tmp: tmp.write_text("file"))
    assert target.read_text() == "file"
