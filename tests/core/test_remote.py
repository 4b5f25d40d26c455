"""Checkpoints by URL, read by ranges, against a real HTTP server on 127.0.0.1 (tests/range_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from range_server import RangeServer, replace_file
from safetensors.torch import save_file

from paramscope.core.errors import Cancelled, SourceError
from paramscope.core.files import remote
from paramscope.core.files.readers import READ_SHARE
from paramscope.core.files.remote_cache import RangeCache
from paramscope.core.files.remote_io import shown_url
from paramscope.core.model.model_statistics import compute_model_statistics
from paramscope.core.model.report import build_report
from paramscope.core.sources.sources import open_source
from paramscope.core.tasks import TaskState

BIG = 300_000  # float32 elements: 1.2 MB, larger than the header probe


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(BIG, generator=g).reshape(600, 500),
        "layers.0.weight": torch.randn(64, 32, generator=g),
        "layers.0.bias": torch.randn(64, generator=g),
        "layers.1.weight": torch.randn(16, 64, generator=g).to(torch.bfloat16),
    }


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PARAMSCOPE_CACHE_DIR", str(folder))
    monkeypatch.setenv("PARAMSCOPE_CACHE_BYTES", str(64 << 20))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr("paramscope.core.files.remote_io.RETRY_PAUSE_S", 0.0)
    return folder


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    save_file(_tensors(), str(root / "model.safetensors"))
    with RangeServer(root) as server:
        yield server


def test_opens_from_the_header_alone_with_placeholders(served: RangeServer) -> None:
    opened = open_source(served.url("model.safetensors"))
    names = dict(opened.model.state_dict())
    assert set(names) == set(_tensors())
    assert all(t.device.type == "meta" for t in names.values())
    assert names["embed.weight"].shape == (600, 500)
    assert len(served.requests) == 1 and served.total_served() <= remote.HEADER_PROBE
    assert opened.loader is not None and opened.path is None


def test_a_tensor_reads_only_its_own_byte_range(served: RangeServer) -> None:
    opened = open_source(served.url("model.safetensors"))
    before = served.total_served()
    weight = opened.loader("layers.0.weight")
    assert torch.equal(weight, _tensors()["layers.0.weight"])
    assert served.total_served() - before == 64 * 32 * 4
    assert torch.equal(opened.loader("layers.1.weight"), _tensors()["layers.1.weight"])


def test_statistics_of_one_tensor_read_that_tensor_only(served: RangeServer) -> None:
    opened = open_source(served.url("model.safetensors"))
    report = build_report(opened.model)
    before = served.total_served()
    result = compute_model_statistics(opened.model, report, names=["layers.0.bias"], loader=opened.loader)
    assert served.total_served() - before == 64 * 4
    assert result["layers.0.bias"].stats.max == pytest.approx(float(_tensors()["layers.0.bias"].max()))


def test_fetched_ranges_are_cached_on_disk_within_the_limit(served: RangeServer, _cache: Path, monkeypatch) -> None:
    opened = open_source(served.url("model.safetensors"))
    opened.loader("embed.weight")
    again = open_source(served.url("model.safetensors"))
    before = served.total_served()
    assert torch.equal(again.loader("embed.weight"), _tensors()["embed.weight"])
    assert served.total_served() == before  # from the cache
    monkeypatch.setenv("PARAMSCOPE_CACHE_BYTES", "300000")
    small = open_source(served.url("model.safetensors"))
    for name in ("layers.0.weight", "layers.0.bias", "layers.1.weight"):
        small.loader(name)
    assert sum(p.stat().st_size for p in _cache.glob("*.bin")) <= 300_000


def test_a_dropped_connection_resumes_after_the_last_byte(served: RangeServer) -> None:
    opened = open_source(served.url("model.safetensors"))
    before = served.total_served()
    served.drop_after = 100_000
    assert torch.equal(opened.loader("embed.weight"), _tensors()["embed.weight"])
    assert served.total_served() - before == BIG * 4  # nothing read twice
    assert served.requests[-1][1].startswith("bytes=") and len(served.requests) == 3


def test_server_errors_are_one_line_naming_the_url_and_a_retry_resumes(served: RangeServer, monkeypatch) -> None:
    monkeypatch.setattr(remote, "CHUNK_BYTES", 400_000)
    opened = open_source(served.url("model.safetensors"))
    loader = opened.loader
    calls = {"n": 0}
    first = served.total_served()
    real_read = remote.RemoteFile._piece

    def piece(self, start, stop):  # the server breaks after the first piece
        calls["n"] += 1
        if calls["n"] == 2:
            served.fail_next = 100
        return real_read(self, start, stop)

    monkeypatch.setattr(remote.RemoteFile, "_piece", piece)
    with pytest.raises(SourceError) as caught:
        loader("embed.weight")
    message = str(caught.value)
    assert served.url("model.safetensors") in message and "HTTP 500" in message and "\n" not in message
    served.fail_next = 0
    monkeypatch.setattr(remote.RemoteFile, "_piece", real_read)
    assert torch.equal(loader("embed.weight"), _tensors()["embed.weight"])
    assert served.total_served() - first == BIG * 4  # the first piece came from the cache


def test_a_file_replaced_between_two_reads_is_refused(served: RangeServer) -> None:
    opened = open_source(served.url("model.safetensors"))
    opened.loader("layers.0.bias")
    replace_file(served.root / "model.safetensors", (served.root / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(SourceError, match="changed on the server since it was opened"):
        opened.loader("layers.0.weight")
    assert torch.equal(opened.loader("layers.0.bias"), _tensors()["layers.0.bias"])  # same version, cached


def test_without_etag_a_changed_size_is_still_refused(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    save_file(_tensors(), str(root / "model.safetensors"))
    with RangeServer(root, etags=False) as server:
        opened = open_source(server.url("model.safetensors"))
        save_file(_tensors(1) | {"extra": torch.ones(3)}, str(root / "model.safetensors"))
        with pytest.raises(SourceError, match="changed on the server"):
            opened.loader("layers.0.bias")


def _write_sharded(root: Path) -> dict[str, torch.Tensor]:
    tensors = _tensors()
    names = sorted(tensors)
    weight_map = {}
    for i, chunk in enumerate((names[:2], names[2:3], names[3:])):
        shard = f"model-0000{i + 1}-of-00003.safetensors"
        save_file({n: tensors[n] for n in chunk}, str(root / shard))
        weight_map.update(dict.fromkeys(chunk, shard))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    return tensors


def test_a_sharded_index_opens_from_one_read_per_shard(tmp_path: Path) -> None:
    root = tmp_path / "sharded"
    root.mkdir()
    tensors = _write_sharded(root)
    with RangeServer(root) as server:
        opened = open_source(server.url("model.safetensors.index.json"))
        assert opened.kind == "sharded"
        assert sorted(n for n, _ in server.requests) == sorted(
            ["model.safetensors.index.json"] + [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
        )
        before = dict(server.served)
        assert torch.equal(opened.loader("embed.weight"), tensors["embed.weight"])
        changed = {k: v - before.get(k, 0) for k, v in server.served.items() if v != before.get(k, 0)}
        assert changed == {"model-00001-of-00003.safetensors": BIG * 4}
        for name in ("layers.0.weight", "layers.1.weight"):  # small: read with their shard's header
            assert torch.equal(opened.loader(name), tensors[name])


def test_a_sharded_index_reports_its_shards_and_stops_between_them(tmp_path: Path) -> None:
    root = tmp_path / "sharded"
    root.mkdir()
    _write_sharded(root)
    seen: list[tuple[float, str]] = []
    with RangeServer(root) as server:
        url = server.url("model.safetensors.index.json")
        open_source(url, state=TaskState(lambda fraction, message: seen.append((fraction, message))))
        headers = [(f, m) for f, m in seen if m.endswith("shard headers")]
        assert [m for _, m in headers] == [f"read {k} of 3 shard headers" for k in (1, 2, 3)]
        assert headers[-1][0] == pytest.approx(READ_SHARE)  # reading's share done, then the module tree
        assert any(m == "building the module tree" for _, m in seen)

        stop = TaskState(lambda _fraction, message: stop.cancel() if message.startswith("read 1 of") else None)
        with pytest.raises(Cancelled):
            open_source(url, state=stop)


def test_index_shards_outside_its_folder_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "evil"
    root.mkdir()
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../secret.safetensors"}}))
    with RangeServer(root) as server, pytest.raises(SourceError, match="not a file beside the index"):
        open_source(server.url("model.safetensors.index.json"))


def test_other_formats_say_download_first(tmp_path: Path) -> None:
    root = tmp_path / "pt"
    root.mkdir()
    torch.save(_tensors(), root / "model.pt")
    with RangeServer(root) as server, pytest.raises(SourceError, match="download it first"):
        open_source(server.url("model.pt"))


def test_a_server_that_ignores_ranges_is_refused_for_a_large_file(served: RangeServer) -> None:
    served.ignore_range = True
    with pytest.raises(SourceError, match="does not answer range requests"):
        open_source(served.url("model.safetensors"))


def test_credentials_are_sent_but_never_shown_or_cached(served: RangeServer, _cache: Path) -> None:
    url = served.url("model.safetensors").replace("http://", "http://alice:s3cret@")
    opened = open_source(url)
    opened.loader("layers.0.bias")
    assert served.headers_seen[-1]["Authorization"].startswith("Basic ")
    assert "s3cret" not in opened.source and "alice" not in opened.source
    assert "s3cret" not in " ".join(opened.notes)
    assert all(b"s3cret" not in p.read_bytes() and "s3cret" not in p.name for p in _cache.rglob("*"))
    with pytest.raises(SourceError) as caught:
        open_source(url.replace("model.safetensors", "missing.safetensors"))
    assert "s3cret" not in str(caught.value) and "404" in str(caught.value)


def test_shown_url_hides_user_info_and_query() -> None:
    assert shown_url("https://u:p@host:8443/a/b.safetensors?X-Amz-Signature=zzz") == "https://host:8443/a/b.safetensors?..."


def test_unsupported_scheme_is_named() -> None:
    with pytest.raises(SourceError, match="ftp:// sources are not supported"):
        open_source("ftp://example.invalid/model.safetensors")


def test_cache_of_zero_bytes_is_off(tmp_path: Path) -> None:
    cache = RangeCache(tmp_path / "c", 0)
    cache.put("k", b"abc")
    assert not cache.get_into("k", memoryview(bytearray(3))) and not (tmp_path / "c").exists()
