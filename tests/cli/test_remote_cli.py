"""``inspect``, ``diff`` and ``export`` of checkpoints by URL (a real server on 127.0.0.1)."""

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
