"""``inspect``, ``diff``, ``export``, ``series``, ``audit`` and ``init`` of checkpoints by URL (a
real server on 127.0.0.1); the range cache's flags and ``paramscope cache``; no secret ever shown
or written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from range_server import RangeServer
from safetensors.torch import load_file, save_file

from paramscope.cli import main
from paramscope.core.files.remote import HEADER_PROBE


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"layers.0.weight": torch.randn(200, 300, generator=g), "layers.0.bias": torch.randn(200, generator=g)}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PARAMSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("PARAMSCOPE_CACHE_BYTES", raising=False)  # --cache-* flags set them: undone after
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    root = tmp_path / "www"
    root.mkdir()
    save_file(_tensors(0), str(root / "a.safetensors"))
    save_file(_tensors(1), str(root / "b.safetensors"))
    with RangeServer(root) as server:
        yield server


def test_inspect_a_url_reads_the_header_and_each_tensor_once(served: RangeServer, capsys) -> None:
    assert main(["inspect", served.url("a.safetensors"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    size = (served.root / "a.safetensors").stat().st_size
    stats = {p["name"]: p["stats"] for p in data["parameters"]}
    assert stats["layers.0.bias"]["max"] == pytest.approx(float(_tensors(0)["layers.0.bias"].max()))
    # the first read (header, and the bias that follows it), then the weight's range alone
    assert [r for _, r in served.requests] == [f"bytes=0-{HEADER_PROBE - 1}", f"bytes={size - 240000}-{size - 1}"]
    assert data["source"] == served.url("a.safetensors")


def test_diff_and_export_of_urls(served: RangeServer, tmp_path: Path, capsys) -> None:
    assert main(["diff", served.url("a.safetensors"), served.url("b.safetensors"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["changed"] == 2
    out = tmp_path / "copy.safetensors"
    assert main(["export", served.url("b.safetensors"), "-o", str(out)]) == 0
    copied = load_file(str(out))
    assert all(torch.equal(copied[k], v) for k, v in _tensors(1).items())


def test_a_failing_server_is_one_line_on_stderr(served: RangeServer, monkeypatch, capsys) -> None:
    monkeypatch.setattr("paramscope.core.files.remote_io.RETRY_PAUSE_S", 0.0)
    served.fail_next = 100
    assert main(["inspect", served.url("a.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and served.url("a.safetensors") in err and "HTTP 500" in err


def test_diff_never_prints_a_urls_password(served: RangeServer, capsys) -> None:
    a, b = (served.url(n).replace("http://", "http://u:pw-secret@") for n in ("a.safetensors", "b.safetensors"))
    assert main(["diff", a, b]) == 0
    out = capsys.readouterr().out
    assert "pw-secret" not in out and served.url("a.safetensors") in out


def test_cache_dir_and_size_flags_and_cache_info_and_clear(served: RangeServer, tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "my-cache"
    url = served.url("a.safetensors")
    assert main(["inspect", url, "--cache-dir", str(folder), "--cache-size", "1MB"]) == 0
    assert [p.stat().st_size for p in folder.iterdir()] == [240_000]  # the weight; the bias came with the header
    capsys.readouterr()
    assert main(["cache", "info", "--cache-dir", str(folder), "--cache-size", "3GiB", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"folder": str(folder), "ranges": 1, "bytes": 240_000, "limit_bytes": 3 << 30}
    served.requests.clear()
    assert main(["inspect", url, "--cache-dir", str(folder)]) == 0
    assert len(served.requests) == 1  # the header; the weight came from the cache
    small = tmp_path / "small-cache"
    assert main(["inspect", url, "--cache-dir", str(small), "--cache-size", "200KB"]) == 0
    assert not small.exists()  # the weight is over the limit: never written
    (folder / "notes.txt").write_text("mine")  # a folder given by mistake loses only cache entries
    (folder / "data.bin").write_bytes(b"mine")
    assert main(["cache", "clear", "--cache-dir", str(folder)]) == 0
    assert "removed 1 cached range(s), 234.4 KiB" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == ["data.bin", "notes.txt"]
    monkeypatch.setenv("PARAMSCOPE_CACHE_DIR", str(tmp_path / "elsewhere"))  # the flags set these
    monkeypatch.setenv("PARAMSCOPE_CACHE_BYTES", "5GB")
    assert main(["cache"]) == 0
    assert capsys.readouterr().out == f"range cache {tmp_path / 'elsewhere'}: 0 range(s), 0 bytes; limit 4.7 GiB\n"


def test_a_bad_cache_size_is_one_line(served: RangeServer, capsys) -> None:
    assert main(["inspect", served.url("a.safetensors"), "--cache-size", "lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "paramscope: --cache-size 'lots': not a size (e.g. 2GB, 500MiB, 0 for no cache)"


def test_credentials_are_never_printed_or_written(served: RangeServer, tmp_path: Path, monkeypatch, capsys) -> None:
    secrets = ("pw-secret-1", "hf_token_secret_2", "aws-secret-3")
    monkeypatch.setenv("HF_TOKEN", secrets[1])  # sent to Hugging Face hosts only
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets[2])
    a, b = (served.url(n).replace("http://", f"http://user:{secrets[0]}@") for n in ("a.safetensors", "b.safetensors"))
    script, out = tmp_path / "replay.py", tmp_path / "out.safetensors"
    commands = [
        ["inspect", a],
        ["inspect", a, "--json"],
        ["diff", a, b, "--json"],
        ["series", a, b, "--json"],
        ["audit", a, "--json"],
        ["export", b, "-o", str(tmp_path / "copy.safetensors")],
        ["init", a, "--rule", "*.bias=zeros", "--seed", "0", "-o", str(out), "--script", str(script)],
        ["cache", "info"],
    ]
    for command in commands:
        assert main(command) == 0, command
        shown = capsys.readouterr()
        assert not any(s in shown.out + shown.err for s in secrets), command
    assert served.url("a.safetensors") in script.read_text()  # the session's script names the URL...
    assert served.headers_seen[-1]["Authorization"].startswith("Basic ")  # ...and the password was sent
    assert not any("Bearer" in h.get("Authorization", "") for h in served.headers_seen)  # not HF: no token
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "www" not in p.parts]
    assert len(written) >= 5  # the cache's ranges, the script, the exports
    for path in written:
        data = path.read_bytes()
        assert not any(s.encode() in data or s in path.name for s in secrets), path
