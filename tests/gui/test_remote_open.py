"""A checkpoint by URL opens in the window, in the background, and no password is remembered."""

from __future__ import annotations

from pathlib import Path

import torch
from range_server import RangeServer
from safetensors.torch import save_file

from paramscope.gui.app.opening import opens_in_background, recent_files


def test_a_url_opens_in_the_window_and_is_remembered_without_its_password(window, qtbot, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PARAMSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    root = tmp_path / "www"
    root.mkdir()
    save_file({"layer.weight": torch.arange(6.0).reshape(2, 3), "layer.bias": torch.ones(2)}, str(root / "m.safetensors"))
    with RangeServer(root) as server:
        url = server.url("m.safetensors").replace("http://", "http://bob:hunter2@")
        assert opens_in_background(url)
        with qtbot.waitSignal(window.opened, timeout=30_000) as ended:
            assert window.open_source(url)
        assert ended.args == [True]
        assert window.state.session.opened.source == server.url("m.safetensors")
        assert recent_files()[0] == server.url("m.safetensors")
        assert "hunter2" not in window.windowTitle() + window.statusBar().currentMessage()
