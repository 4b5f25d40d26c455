"""Bounded work on hostile pickles: the inert scan refuses, in one line naming the limit, what
needs more opcodes, memo, stack, nesting or bytes than any real checkpoint.

The files are torch.save files whose data.pkl (zip) or object pickle (legacy format) is replaced
by crafted bytes. That a refusal came quickly is checked by what it names (the limit that
stopped the scan), never by timing.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from paramscope.core.errors import SourceError
from paramscope.core.files import pickle_limits, pickle_scan
from paramscope.core.files.pickle_limits import ScanLimitError
from paramscope.core.files.pickle_scan import scan_pickle
from paramscope.core.files.sniff import LEGACY_MAGIC
from paramscope.core.sources.sources import open_source

PROTO2 = b"\x80\x02"


def _zip_with_pickle(path: Path, pkl: bytes, deflate: bool = True) -> Path:
    """A real torch.save file whose data.pkl is replaced by ``pkl`` (deflated: the bomb form)."""
    source = path.with_name("source.pt")
    torch.save({"w": torch.ones(2)}, source)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename.endswith("/data.pkl"):
                kind = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
                dst.writestr(info.filename, pkl, compress_type=kind)
            else:
                dst.writestr(info, src.read(info))
    source.unlink()
    return path


def _legacy_with_pickle(path: Path, pkl: bytes) -> Path:
    """torch's legacy layout (magic, protocol, sys_info, object, keys) around ``pkl``."""
    buffer = io.BytesIO()
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for value in (LEGACY_MAGIC, 1001, sys_info):
        pickle.dump(value, buffer, protocol=2)
    buffer.write(pkl)
    pickle.dump([], buffer, protocol=2)
    path.write_bytes(buffer.getvalue())
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(SourceError) as info:
        open_source(str(path))
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def _none_pop(count: int) -> bytes:
    """``count`` NONE+POP pairs: the stack stays empty, only the opcode count grows."""
    return PROTO2 + b"N0" * count + b"N."


def test_deflated_opcode_bomb_in_a_zip_file_is_refused_by_its_opcode_count(tmp_path: Path) -> None:
    path = _zip_with_pickle(tmp_path / "bomb.pt", _none_pop(6_000_000))  # 12 MB, deflates to ~12 KB
    assert path.stat().st_size < 100_000
    message = _refusal(path)
    assert "more than 1,000,000 opcodes" in message and "0 storages;" in message


def test_opcode_bomb_in_a_legacy_file_is_refused_by_its_opcode_count(tmp_path: Path) -> None:
    message = _refusal(_legacy_with_pickle(tmp_path / "bomb.pt", _none_pop(2_000_000)))
    assert "more than 1,000,000 opcodes" in message


def test_the_issue_none_bomb_is_refused(tmp_path: Path) -> None:
    """NONE only (the stack grows): refused by the stack limit long before 400 M opcodes."""
    path = _zip_with_pickle(tmp_path / "none.pt", PROTO2 + b"N" * 20_000_000 + b".")
    assert "100,000 stack entries" in _refusal(path)


def test_data_pkl_larger_than_a_checkpoint_needs_is_refused_before_reading(tmp_path: Path) -> None:
    path = _zip_with_pickle(tmp_path / "big.pt", PROTO2 + b"N" * (40 * 1024 * 1024) + b".")
    message = _refusal(path)
    assert "its data.pkl is 40.0 MiB, more than the 32.0 MiB allowed for 1 storage(s)" in message


def test_memo_is_bounded(tmp_path: Path) -> None:
    """Distinct LONG_BINPUT indexes grow the memo by one each: refused at the memo limit."""
    puts = b"".join(b"Nr" + struct.pack("<I", i) + b"0" for i in range(300_000))
    assert "250,000 memo entries" in _refusal(_zip_with_pickle(tmp_path / "memo.pt", PROTO2 + puts + b"N."))


def test_a_huge_long_binput_index_allocates_nothing() -> None:
    assert scan_pickle(PROTO2 + b"Nr\xff\xff\xff\xff.").top_level is None


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x8d", b"\x96"])  # BINBYTES8, BINUNICODE8, BYTEARRAY8
def test_huge_length_claims_are_refused_before_allocating(tmp_path: Path, opcode: bytes) -> None:
    pkl = b"\x80\x05" + opcode + struct.pack("<Q", 1 << 40) + b"tiny."
    assert "more than 33,554,432 bytes" in _refusal(_zip_with_pickle(tmp_path / "claim.pt", pkl))
    assert "more than 33,554,432 bytes" in _refusal(_legacy_with_pickle(tmp_path / "claim_legacy.pt", pkl))


def test_a_huge_frame_claim_is_refused_before_reading(tmp_path: Path) -> None:
    pkl = b"\x80\x04\x95" + struct.pack("<Q", 1 << 40) + b"N."
    assert "more than 33,554,432 bytes" in _refusal(_legacy_with_pickle(tmp_path / "frame.pt", pkl))
    assert "more than 33,554,432 bytes" in _refusal(_zip_with_pickle(tmp_path / "frame_zip.pt", pkl))


def test_open_marks_are_bounded() -> None:
    with pytest.raises(ScanLimitError, match="nested MARKs"):
        scan_pickle(PROTO2 + b"(" * 5000 + b"N.")


def _nested_dicts(depth: int) -> bytes:
    """A dict within a dict ``depth`` times, built through the memo: the stack stays small."""
    level = b"h\x00X\x01\x00\x00\x00a}q\x01s0h\x01q\x000"  # d[a] = {}; d = that new dict
    return PROTO2 + b"}q\x00q\x02" + level * depth + b"0h\x02."


def test_nesting_is_bounded(tmp_path: Path) -> None:
    """A state_dict nested 2,000 deep made the recursive reader raise RecursionError."""
    assert scan_pickle(_nested_dicts(50)).top_level is not None
    message = _refusal(_zip_with_pickle(tmp_path / "deep.pt", _nested_dicts(2000)))
    assert "nests containers more than 100 levels deep" in message


def test_a_self_containing_state_dict_is_refused(tmp_path: Path) -> None:
    state: dict[str, object] = {"w": torch.ones(2)}
    state["self"] = state
    torch.save(state, tmp_path / "self.pt")
    ordered = collections.OrderedDict(w=torch.ones(2))
    ordered["again"] = {"inner": ordered}
    torch.save(ordered, tmp_path / "ordered.pt")
    for name in ("self.pt", "ordered.pt"):
        assert "holds a container that contains itself" in _refusal(tmp_path / name)


def test_shared_containers_are_not_cycles() -> None:
    shared = {"lr": 0.1}
    nesting = pickle_scan.nesting_problem({"a": shared, "b": [shared, shared], "c": (shared,)})
    assert nesting is None


def _tensors_pickle(count: int) -> tuple[bytes, int]:
    buffer = io.BytesIO()
    torch.save({f"layer.{i}.weight": torch.zeros(1) for i in range(count)}, buffer)
    with zipfile.ZipFile(buffer) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        return archive.read(name), sum("/data/" in n for n in archive.namelist())


def test_the_limits_grow_with_the_storages(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a small base, 1,000 tensors (30,000 opcodes) pass only thanks to their storages."""
    monkeypatch.setattr(pickle_limits, "_BASE_OPCODES", 10_000)
    monkeypatch.setattr(pickle_limits, "_BASE_MEMO", 1_000)
    raw, storages = _tensors_pickle(1_000)
    assert len(scan_pickle(raw, max_storages=storages).storages) == 1_000
    with pytest.raises(ScanLimitError, match="needs more than"):  # the same pickle, few storages
        scan_pickle(raw, max_storages=1)


def test_real_checkpoints_still_open(tmp_path: Path) -> None:
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(30)])
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(4)).sum().backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "ck.pt")
    torch.save(model.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("ck.pt", "legacy.pt"):
        assert len(dict(open_source(str(tmp_path / name)).model.named_parameters())) == 60


def test_a_legacy_pickled_module_is_scanned(tmp_path: Path) -> None:
    """The legacy format pickles a module's class as a persistent id; the scan once failed on it
    ("damaged ... (TypeError)") even with trust."""
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 3), path, _use_new_zipfile_serialization=False)
    with pytest.raises(SourceError, match="--trust"):
        open_source(str(path))
    assert open_source(str(path), trust=True).model.weight.shape == (3, 2)


def test_what_a_legacy_pickle_reads_in_total_is_bounded(tmp_path: Path) -> None:
    """Nine 4 MiB strings, each a fair claim, are 36 MiB together: counted as read, refused."""
    chunk = b"\x8e" + struct.pack("<Q", 4 << 20) + b"\0" * (4 << 20) + b"0"
    message = _refusal(_legacy_with_pickle(tmp_path / "strings.pt", PROTO2 + chunk * 9 + b"N."))
    assert "more than 33,554,432 bytes" in message
