"""The opened checkpoint saved over by another process: the window keeps running and says so."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from paramscope.core.edit.value_edits import value_edit_command


def _save(path: Path, value: float) -> None:
    save_file({"0.weight": torch.full((3, 4), value), "0.bias": torch.zeros(3)}, str(path))


def test_truncated_file_keeps_window_and_edits_then_reopens(window, qtbot, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.safetensors"
    _save(path, 1.0)
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        assert window.open_source(str(path))
    session = window.state.session
    session.execute(value_edit_command(session, ["0.bias"], "add", 5.0))

    with open(path, "r+b") as handle:  # a training job starts saving over it
        handle.truncate(100)
    qtbot.waitUntil(window.changed_label.isVisible, timeout=10_000)
    assert "ckpt.safetensors changed on disk" in window.changed_label.text()
    assert "your edits are kept" in window.changed_label.text()
    assert window.reopen_button.isVisible()
    # the values in memory are untouched: statistics, selection and export all still work
    assert torch.equal(session.model.get_parameter("0.weight").detach(), torch.full((3, 4), 1.0))
    assert torch.equal(session.model.get_parameter("0.bias").detach(), torch.full((3,), 5.0))
    window.state.select_tensor("0.weight")
    assert session.ensure_summary("0.weight").stats.mean == 1.0

    _save(path, 2.0)  # the save finishes
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        window.reopen_button.click()
    assert window.state.session is not session
    assert torch.equal(window.state.session.model.get_parameter("0.weight").detach(), torch.full((3, 4), 2.0))
    assert not window.changed_label.isVisible()
