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


def _open_lazily(window, qtbot, tmp_path, monkeypatch, tensors: dict) -> list[tuple[str, bool]]:
    """Open ``tensors`` saved as a file that opens lazily (as one of many gigabytes does); returns
    the reads of its tensors, ``(name, on the GUI thread)``, as they happen."""
    import threading

    from safetensors.torch import save_file

    from paramscope.core.files import regions

    path = tmp_path / "big.safetensors"
    save_file(tensors, str(path))
    monkeypatch.setattr(regions, "LAZY_BYTES", 0)
    reads: list[tuple[str, bool]] = []
    read = regions.RegionLoader.__call__

    def recorded(self: regions.RegionLoader, name: str):
        reads.append((name, threading.current_thread() is threading.main_thread()))
        return read(self, name)

    monkeypatch.setattr(regions.RegionLoader, "__call__", recorded)
    with qtbot.waitSignal(window.opener.opened, timeout=30_000):
        window.open_source(str(path))
    qtbot.waitUntil(lambda: not window.statistics.is_running, timeout=30_000)
    return reads


def test_a_lazily_opened_tensor_is_never_read_on_the_gui_thread(window, qtbot, tmp_path, monkeypatch) -> None:
    """A small tensor of a lazily opened checkpoint was read on the GUI thread for its histogram
    (a network request for a URL, the window frozen while it took) besides the worker's read,
    and the Spectrum tab read any tensor there, a 1.85 GB embedding included."""
    import numpy as np
    import torch

    weight = torch.randn(48, 32, generator=torch.Generator().manual_seed(0))
    tensors = {"proj.weight": weight, "proj.bias": torch.ones(48), "embed.weight": torch.randn(64, 8)}
    reads = _open_lazily(window, qtbot, tmp_path, monkeypatch, tensors)
    session = window.state.session
    with qtbot.waitSignal(window.statistics.allDone, timeout=30_000):
        window.state.select_tensor("proj.weight")
    assert session.summary("proj.weight") is not None
    with qtbot.waitSignal(window.spectrum_view.computed, timeout=30_000) as computed:
        window.tabs.setCurrentWidget(window.spectrum_view)
    expected = torch.linalg.svdvals(weight.double()).numpy()
    assert np.allclose(computed.args[0].singular_values, expected, rtol=1e-10)
    assert reads and not [name for name, on_gui_thread in reads if on_gui_thread]
    assert [name for name, _ in reads].count("proj.weight") == 2  # statistics, then the spectrum


def test_the_values_of_a_lazily_opened_tensor_are_read_when_the_tab_is_shown(window, qtbot, tmp_path, monkeypatch) -> None:
    """The Values tab said "no data: meta" for every tensor of a checkpoint opened lazily."""
    import numpy as np
    import torch

    weight = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    reads = _open_lazily(window, qtbot, tmp_path, monkeypatch, {"proj.weight": weight, "proj.bias": torch.arange(5.0)})
    grid = window.value_grid
    with qtbot.waitSignal(window.statistics.allDone, timeout=30_000):
        window.state.select_tensor("proj.bias")
    assert "read when this tab is shown" in grid.note.text() and grid.model.rowCount() == 0
    assert not grid.worker.is_running and reads.count(("proj.bias", False)) == 1  # its statistics only
    with qtbot.waitSignal(grid.worker.finished, timeout=30_000):
        window.tabs.setCurrentWidget(grid)
    window.state.select_tensor("proj.weight")
    qtbot.waitUntil(lambda: grid.model.rowCount() == 5, timeout=30_000)
    shown = np.array([[float(grid.model.index(r, c).data()) for c in range(7)] for r in range(5)])
    assert np.allclose(shown, weight.numpy(), rtol=1e-3, atol=1e-4)  # (shown with 4 significant digits)
    assert grid.note.text() == "proj.weight: shape [5, 7]"
    assert not [name for name, on_gui_thread in reads if on_gui_thread]


def test_copy_values_of_a_lazily_opened_tensor_copies_its_values(window, qtbot, tmp_path, monkeypatch) -> None:
    """Copy values gave "tensor(..., device='meta', size=(5,))" for a checkpoint opened lazily."""
    import torch

    _open_lazily(window, qtbot, tmp_path, monkeypatch, {"proj.weight": torch.ones(300, 1000), "proj.bias": torch.arange(5.0)})
    session = window.state.session
    assert session.tensor("proj.bias").device.type == "meta"
    assert window.row_menus.values_text("proj.bias") == str(torch.arange(5.0))
    assert session.tensor("proj.bias").device.type == "meta"  # read, not kept
    # 1.2 MB: not read on the GUI thread
    assert window.row_menus.values_text("proj.weight") == "proj.weight: [300, 1000] float32, still in the file: the Values tab reads it"
