"""The Values tab shows a one-line note, never an exception, for tensors NumPy cannot hold:
float8 dtypes, more than 64 dimensions, an empty tensor of 2**62 columns."""

from __future__ import annotations

from pathlib import Path

import torch
from PySide6.QtCore import Qt
from safetensors.torch import save_file

from paramscope.gui.panels.value_grid import grid_of

ODD = {
    "e8m0": torch.full((3,), 2.0).to(torch.float8_e8m0fnu),
    "e4m3": torch.full((2, 2), 0.5).to(torch.float8_e4m3fn),
    "dims65": torch.arange(2.0).reshape([2] + [1] * 64),
    "huge_empty": torch.empty([0, 2**62]),
}


def test_grid_of_odd_tensors_gives_values_or_a_note() -> None:
    array, rows, note, _columns = grid_of(ODD["e8m0"])
    assert array.tolist() == [[2.0, 2.0, 2.0]]
    array, rows, note, _columns = grid_of(ODD["dims65"])
    assert array.shape == (2, 1) and rows[1] == "[1" + ", 0" * 63 + ", :]"
    array, rows, note, _columns = grid_of(ODD["huge_empty"])
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


def test_a_large_weight_shows_its_corners_as_print_does(window, qtbot) -> None:
    """The tab said "up to 4,096 elements" for any real layer; print(param) shows its first and
    last rows and columns around '...'."""
    from torch import nn

    from paramscope.core.sources.sources import OpenedModel

    net = nn.Sequential(nn.Linear(200, 100))
    window.open_model(OpenedModel(net, "wide", "live"))
    window.state.select_tensor("0.weight")
    model = window.value_grid.model
    weight = net[0].weight.detach()
    assert (model.rowCount(), model.columnCount()) == (7, 7)
    cell = lambda r, c: model.index(r, c).data()  # noqa: E731
    assert cell(0, 0) == f"{float(weight[0, 0]):.4g}" and cell(6, 6) == f"{float(weight[99, 199]):.4g}"
    assert cell(3, 0) == "…" and cell(0, 3) == "…"
    assert [model.headerData(c, Qt.Orientation.Horizontal) for c in (2, 3, 4)] == ["2", "…", "197"]
    assert [model.headerData(r, Qt.Orientation.Vertical) for r in (2, 3, 4)] == ["2", "…", "97"]
    assert "0.weight: shape [100, 200], 20,000 elements: the first and last 3" in window.value_grid.note.text()
