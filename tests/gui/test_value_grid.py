"""The Values tab shows a one-line note, never an exception, for tensors NumPy cannot hold:
float8 dtypes, more than 64 dimensions, an empty tensor of 2**62 columns."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from paramscope.gui.panels.value_grid import grid_of

ODD = {
    "e8m0": torch.full((3,), 2.0).to(torch.float8_e8m0fnu),
    "e4m3": torch.full((2, 2), 0.5).to(torch.float8_e4m3fn),
    "dims65": torch.arange(2.0).reshape([2] + [1] * 64),
    "huge_empty": torch.empty([0, 2**62]),
}


def test_grid_of_odd_tensors_gives_values_or_a_note() -> None:
    array, rows, note = grid_of(ODD["e8m0"])
    assert array.tolist() == [[2.0, 2.0, 2.0]]
    array, rows, note = grid_of(ODD["dims65"])
    assert array.shape == (2, 1) and rows[1] == "[1" + ", 0" * 63 + ", :]"
    array, rows, note = grid_of(ODD["huge_empty"])
    assert array is None and note == "shape [0, 4611686018427387904]: no values (it has no elements)"


def test_values_tab_on_odd_tensors_shows_one_line(window, qtbot, tmp_path: Path) -> None:
    path = tmp_path / "odd.safetensors"
    save_file(ODD, str(path))
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        assert window.open_source(str(path))
    grid = window.value_grid
    for name, expected in (("e8m0", "one row"), ("e4m3", "[2, 2]"), ("dims65", "shown as 2-D"), ("huge_empty", "no values")):
        window.state.select_tensor(name)
        note = grid.note.text()
        assert note.startswith(f"{name}: ") and expected in note and "\n" not in note, note
        rows, columns = grid.model.rowCount(), grid.model.columnCount()
        assert rows * columns == ODD[name].numel()
        if rows:
            grid.model.data(grid.model.index(rows - 1, columns - 1))
