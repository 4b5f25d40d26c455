"""Huge or lazily opened sources: the window computes statistics only for what is selected."""

from __future__ import annotations

import pytest

from paramscope.core.edit import session as session_module


def test_large_source_gets_statistics_only_for_the_selected_tensor(window, qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "ON_DEMAND_BYTES", 0)  # every model counts as huge
    assert window.open_source("demo:cnn")
    session = window.state.session
    assert session.stats_on_demand
    qtbot.waitUntil(lambda: not window.statistics.is_running, timeout=30_000)
    shown = window.state.selected_tensor  # opening selects a first weight to show
    assert shown is not None and shown != "classifier.weight"
    assert all(session.summary(n) is None for n in session.report.parameters if n != shown)  # nothing else read

    with qtbot.waitSignal(window.statistics.allDone, timeout=30_000):
        window.state.select_tensor("classifier.weight")
    assert session.summary("classifier.weight") is not None
    others = [n for n in session.report.parameters if n not in ("classifier.weight", shown)]
    assert all(session.summary(n) is None for n in others)


def test_a_lazily_opened_tensor_is_read_once_for_its_statistics(window, qtbot, tmp_path, monkeypatch) -> None:
    """Opening selects the largest tensor, and the first paint and that selection each restarted
    the statistics: a lazily opened 1.85 GB embedding was read twice at once (4 GB), since a read
    under way cannot stop. The task computing just that is left running."""
    import threading
    import time

    import torch
    from safetensors.torch import save_file

    from paramscope.core.files import regions
    from paramscope.gui.panels import histogram_panel

    path = tmp_path / "big.safetensors"
    save_file({"embed.weight": torch.randn(256, 64), "norm.weight": torch.ones(64)}, str(path))
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)  # as a file of many gigabytes opens
    monkeypatch.setattr(histogram_panel, "SYNC_SUMMARY_LIMIT", 0)  # as for a large tensor: no read here
    reads: list[str] = []
    lock = threading.Lock()
    read = regions.RegionLoader.__call__

    def slow_read(self: regions.RegionLoader, name: str) -> torch.Tensor:
        with lock:
            reads.append(name)
        time.sleep(0.3)  # as a large tensor takes: the window paints and selects meanwhile
        return read(self, name)

    monkeypatch.setattr(regions.RegionLoader, "__call__", slow_read)
    with qtbot.waitSignal(window.opener.opened, timeout=30_000):
        window.open_source(str(path))
    qtbot.waitUntil(lambda: window.state.session.summary("embed.weight") is not None, timeout=30_000)
    qtbot.waitUntil(lambda: not window.statistics.is_running, timeout=30_000)
    assert reads == ["embed.weight"]
