"""Comparing written bytes with tensor memory while the file is written (checked_write)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from paramscope.core import atomic
from paramscope.core.files import checked_write
from paramscope.core.files.checked_write import CheckedSpans, CheckingFile, SourceMemory, Span

pytestmark = pytest.mark.skipif(checked_write.memcmp() is None, reason="no C memcmp here")


def _bytes(tensor: torch.Tensor) -> memoryview:
    return memoryview(tensor.view(-1).view(torch.uint8).numpy())


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check writes of any size, handed over in 1000-byte pieces (offsets off the page grid)."""
    monkeypatch.setattr(checked_write, "MIN_CHECKED", 1)
    monkeypatch.setattr(checked_write, "PIECE", 1000)


def test_spans_merge_where_file_and_memory_both_continue() -> None:
    spans = CheckedSpans([Span(100, 5000, 50), Span(0, 9000, 100), Span(150, 5050, 30)])
    assert len(spans) == 2  # 100..150 and 150..180 continue in the file and in memory
    assert spans.covers(100, 5000, 80) and spans.covers(120, 5020, 60)
    assert spans.covers(0, 9000, 100) and spans.covers(10, 9010, 1)
    assert not spans.covers(90, 9090, 20)  # runs into bytes compared against other memory
    assert not spans.covers(100, 5001, 10)  # right place, other memory
    assert not spans.covers(170, 5070, 20)  # past the end
    assert not CheckedSpans([Span(0, 9000, 100), Span(100, 7000, 10)]).covers(90, 9090, 20)


def test_source_memory_holds_the_tensors_storages_only() -> None:
    base = torch.arange(100, dtype=torch.float32)
    view = base[10:20]
    sources = SourceMemory([view, torch.empty(0)])
    start = base.untyped_storage().data_ptr()
    assert sources.holds(start, 400) and sources.holds(view.data_ptr(), 40)
    assert not sources.holds(start + 1, 400)  # one byte past the storage
    assert not sources.holds(torch.ones(10).data_ptr(), 4)
    assert not SourceMemory([torch.ones(4, device="meta")]).holds(0, 1)


def test_written_bytes_are_compared_with_their_tensor(tmp_path: Path, small_pieces: None) -> None:
    first, second = torch.randn(700), torch.randn(300)
    path = tmp_path / "out.bin"
    with CheckingFile(path, SourceMemory([first, second])) as out:
        out.write(b"header")  # not a tensor's memory: left to the later check
        out.write(_bytes(first))
        out.write(_bytes(second).tobytes())  # a copy: its memory may be gone when compared
    assert path.read_bytes() == b"header" + _bytes(first).tobytes() + _bytes(second).tobytes()
    assert out.checked.covers(6, first.data_ptr(), 2800)  # three pieces, merged
    assert not out.checked.covers(0, first.data_ptr(), 6)
    assert not out.checked.covers(2806, second.data_ptr(), 1200)


def test_bytes_that_reach_the_file_changed_are_not_counted_as_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_pieces: None
) -> None:
    real = atomic.WritebackFile._write_some

    def flip_at_2500(self: atomic.WritebackFile, view: memoryview) -> int:
        if self.position <= 2500 < self.position + len(view):
            damaged = bytearray(view)
            damaged[2500 - self.position] ^= 0x01
            return real(self, memoryview(damaged))
        return real(self, view)

    monkeypatch.setattr(atomic.WritebackFile, "_write_some", flip_at_2500)
    tensor = torch.randn(1000)
    with CheckingFile(tmp_path / "out.bin", SourceMemory([tensor])) as out:
        out.write(_bytes(tensor))
    address = tensor.data_ptr()
    assert out.checked.covers(0, address, 2000)  # the pieces before the damaged one
    assert not out.checked.covers(0, address, 4000)
    assert out.checked.covers(3000, address + 3000, 1000)  # and the ones after


def test_a_failed_write_stops_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_pieces: None
) -> None:
    real = atomic.WritebackFile._write_some

    def disk_full_after_5000(self: atomic.WritebackFile, view: memoryview) -> int:
        if self.position >= 5000:
            raise OSError(28, "No space left on device")
        return real(self, view)

    monkeypatch.setattr(atomic.WritebackFile, "_write_some", disk_full_after_5000)
    tensor = torch.randn(4000)
    out = CheckingFile(tmp_path / "out.bin", SourceMemory([tensor]))
    with pytest.raises(OSError, match="No space"), out:
        out.write(_bytes(tensor))
    assert out.error is not None
    assert not [t for t in threading.enumerate() if t.name == "paramscope-readback"]


def test_small_writes_need_no_helper(tmp_path: Path) -> None:
    tensor = torch.randn(10)
    with CheckingFile(tmp_path / "out.bin", SourceMemory([tensor])) as out:
        out.write(_bytes(tensor))
        assert not [t for t in threading.enumerate() if t.name == "paramscope-readback"]
    assert len(out.checked) == 0


def test_the_helper_starts_the_disk_on_what_it_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_pieces: None
) -> None:
    """So that ext4 has nothing left to flush when the file is renamed over an old one."""
    started: list[tuple[int, int]] = []
    monkeypatch.setattr(checked_write, "start_writeback", lambda fd, off, n: started.append((off, n)))
    monkeypatch.setattr(atomic, "start_writeback", lambda *a: pytest.fail("the writer hinted"))
    tensor = torch.randn(600)
    with CheckingFile(tmp_path / "out.bin", SourceMemory([tensor])) as out:
        out.write(b"head")
        out.write(_bytes(tensor))
    assert started == [(4, 1000), (1004, 1000), (2004, 400)]
