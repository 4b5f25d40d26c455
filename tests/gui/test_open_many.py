"""A checkpoint of 20,000 tiny tensors opens in the window with every panel right, and what the
panels need is made off the GUI thread (issue 14: opening 100,000 tensors blocked the window for
seconds). A model the window replaced is freed, although what opening made is frozen out of the
cyclic collector's walks."""

from __future__ import annotations

import gc
import threading
import weakref
from functools import cached_property

import torch
from PySide6.QtCore import QItemSelectionModel, Qt
from safetensors.torch import save_file
from torch import nn

import paramscope.core.edit.session as session_module
import paramscope.gui.workers as workers
from paramscope.cli.bench_many import many_tensors
from paramscope.core.model.report import ModelReport
from paramscope.gui.models.param_table import COL_MEAN, COL_NAME, NAME_ROLE, fmt_float
from paramscope.gui.models.tree_model import COL_BADGES, COL_TOTAL

COUNT = 20_000  # ten tensors per blocks.{i}, as the bench's many_tensors step writes them
BROKEN = "blocks.7.layers.3.weight"


def _checkpoint(tmp_path, count: int = COUNT, name: str = "many.safetensors"):
    tensors = many_tensors(count)
    tensors[BROKEN][0] = float("nan")
    path = tmp_path / name
    save_file(tensors, str(path))
    return path, tensors


def _open_and_wait(window, qtbot, path, **options) -> None:
    with qtbot.waitSignal(window.statistics.allDone, timeout=300_000):
        assert window.open_source(str(path), **options)
    assert window.state.session.opened.source == str(path) and window.statistics.complete


def test_twenty_thousand_tensors_open_with_every_panel_right(window, qtbot, tmp_path) -> None:
    path, tensors = _checkpoint(tmp_path)
    _open_and_wait(window, qtbot, path)
    session = window.state.session
    assert len(session.report.parameters) == COUNT

    table = window.param_panel
    assert table.model.rowCount() == COUNT and table.proxy.rowCount() == COUNT
    assert table.model.index(0, COL_NAME).data() == "blocks.0.layers.0.weight"
    first = tensors["blocks.0.layers.0.weight"].double()
    assert table.model.index(0, COL_MEAN).data() == fmt_float(float(first.mean()))

    tree = window.tree_panel.model
    assert tree.index(0, COL_TOTAL).data() == f"{sum(t.numel() for t in tensors.values()):,}"
    blocks = tree.index_of("blocks")
    assert len(session.report.modules["blocks"].children) == COUNT // 10 and tree.rowCount(blocks) > 0
    broken_module = tree.index_of("blocks.7.layers.3")
    assert tree.index(broken_module.row(), COL_BADGES, broken_module.parent()).data() == "! 1"

    assert window.diagnostics_panel.messages() == [f"{BROKEN} has 1 NaN and 0 Inf values"]
    backward = window.backward_panel.table_model
    assert backward.rowCount() == COUNT
    assert [backward.text(COUNT - 1, 0), backward.text(COUNT - 1, 2)] == ["blocks.1999.layers.9.weight", "None"]

    table.filter_box.setText("layers.3.")
    assert table.proxy.rowCount() == COUNT // 10
    table.view.sortByColumn(COL_MEAN, Qt.SortOrder.DescendingOrder)
    means = {n: float(t.double()[t.isfinite()].mean()) for n, t in tensors.items() if ".layers.3." in n}
    shown = [table.proxy.index(r, COL_NAME).data(NAME_ROLE) for r in range(table.proxy.rowCount())]
    assert shown == sorted(means, key=lambda n: -means[n])


def _record_thread(monkeypatch, module, name: str) -> list[tuple[threading.Thread, tuple]]:
    calls: list[tuple[threading.Thread, tuple]] = []
    real = getattr(module, name)

    def recording(*args, **kwargs):
        calls.append((threading.current_thread(), args))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return calls


def _record_cached(monkeypatch, cls, name: str) -> list[threading.Thread]:
    threads: list[threading.Thread] = []
    real = getattr(cls, name).func

    def recording(self):
        threads.append(threading.current_thread())
        return real(self)

    made = cached_property(recording)
    made.__set_name__(cls, name)
    monkeypatch.setattr(cls, name, made)
    return threads


def test_the_panels_take_what_the_workers_made(window, qtbot, tmp_path, monkeypatch) -> None:
    """Diagnostics, the report's orders and the statistics' columns are made in the workers; on
    the GUI thread the panels only read them (each was a pass over every tensor there)."""
    path, _tensors = _checkpoint(tmp_path, 2_000)
    diagnosed = _record_thread(monkeypatch, session_module, "structure_diagnostics")
    columns = _record_thread(monkeypatch, session_module, "stat_columns")
    orders = {name: _record_cached(monkeypatch, ModelReport, name) for name in ("order", "module_order", "module_rows")}
    _open_and_wait(window, qtbot, path)
    gui = threading.main_thread()
    assert diagnosed and all(thread is not gui for thread, _args in diagnosed)
    for name, threads in orders.items():
        assert threads and gui not in threads, name
    # Only a single summary (the selected tensor's, for its histogram) may be arranged here.
    assert all(thread is not gui or len(args[1]) <= 1 for thread, args in columns)
    assert window.diagnostics_panel.messages() == [f"{BROKEN} has 1 NaN and 0 Inf values"]


def test_filtering_keeps_the_selected_row_and_sorting_follows_new_statistics(window, qtbot, tmp_path) -> None:
    path, tensors = _checkpoint(tmp_path, 200)
    _open_and_wait(window, qtbot, path)
    panel, name = window.param_panel, "blocks.3.layers.5.weight"
    panel.view.selectionModel().select(
        panel.proxy.mapFromSource(panel.model.index(panel.model.row_of(name), 0)),
        QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
    )
    panel.filter_box.setText("LAYERS.5")
    assert panel.proxy.rowCount() == 20 and panel.selected_names() == [name]
    assert panel.model.row_of("blocks.3.layers.4.weight") == -1  # filtered out
    panel.view.sortByColumn(COL_MEAN, Qt.SortOrder.AscendingOrder)
    assert panel.selected_names() == [name]
    top = panel.proxy.index(panel.proxy.rowCount() - 1, COL_NAME).data(NAME_ROLE)
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        window.state.execute(_scale(window.state.session, name, 1e6))  # now the largest mean
    assert panel.proxy.index(panel.proxy.rowCount() - 1, COL_NAME).data(NAME_ROLE) == name != top
    panel.filter_box.clear()
    assert panel.proxy.rowCount() == 200 and panel.selected_names() == [name]


def _scale(session, name: str, factor: float):
    from paramscope.core.edit.commands import TensorEditCommand

    tensor = session.editable(name)
    return TensorEditCommand("scale", [(name, tensor)], lambda: tensor.add_(abs(tensor).max() + 1).mul_(factor))


def test_a_replaced_model_is_freed_by_reference_counting(window, qtbot, tmp_path, monkeypatch) -> None:
    """What opening made is frozen (no collector walks it); a model the window drops must still go:
    no worker may keep a cycle that holds it."""
    monkeypatch.setattr(workers, "FREED_WITHIN_MS", 600_000)  # the collector's rescue comes too late
    first, _ = _checkpoint(tmp_path, 200, "first.safetensors")
    second, _ = _checkpoint(tmp_path, 200, "second.safetensors")
    _open_and_wait(window, qtbot, first)
    # The freeze comes when the last worker holding the collector off ends, and an earlier test's
    # rescue timer (expect_freed) may unfreeze in between: waited for, not read once (CI saw 0).
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=10_000)
    dropped = weakref.ref(window.state.session.model)
    collecting = gc.isenabled()
    gc.disable()  # only reference counting may free it
    try:
        _open_and_wait(window, qtbot, second)
        qtbot.waitUntil(lambda: dropped() is None, timeout=10_000)
    finally:
        if collecting:
            gc.enable()


class Looped(nn.Module):
    """A module in a reference cycle (as one whose hook is its own bound method)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.me = [self]


def test_a_replaced_model_in_a_cycle_goes_back_to_the_collector(window, qtbot, tmp_path, monkeypatch) -> None:
    path = tmp_path / "looped.pt"
    torch.save(Looped(), path)
    other, _ = _checkpoint(tmp_path, 100)
    monkeypatch.setattr(workers, "FREED_WITHIN_MS", 0)
    _open_and_wait(window, qtbot, path, trust=True)
    dropped = weakref.ref(window.state.session.model)
    assert type(dropped()).__name__ == "Looped"
    _open_and_wait(window, qtbot, other)
    qtbot.waitUntil(lambda: dropped() is None, timeout=10_000)


def test_showing_a_new_model_runs_no_collector_pass(window, qtbot, tmp_path, monkeypatch) -> None:
    """The views' rows of a new model (a tuple per tensor) are made with the collector off and
    frozen with the model: a full pass over them took 0.1 s at a time, at 300,000 tensors."""
    path, _tensors = _checkpoint(tmp_path, 2_000)
    swapping = [False]
    passes: list[int] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and swapping[0] and threading.current_thread() is threading.main_thread():
            passes.append(info["generation"])

    real = window.state.set_session

    def set_session(session) -> None:
        swapping[0] = True
        try:
            real(session)
        finally:
            swapping[0] = False

    monkeypatch.setattr(window.state, "set_session", set_session)
    thresholds = gc.get_threshold()
    gc.set_threshold(50, 1, 1)  # a pass for every few allocations, were the collector on
    gc.callbacks.append(on_gc)
    try:
        _open_and_wait(window, qtbot, path)
    finally:
        gc.callbacks.remove(on_gc)
        gc.set_threshold(*thresholds)
    assert window.param_panel.model.rowCount() == 2_000 and passes == []


def test_opening_a_checkpoint_reads_no_gradient_on_the_gui_thread(window, qtbot, tmp_path, monkeypatch) -> None:
    """A checkpoint has no .grad: that is seen by the worker that opens it, and the statistics
    take no gradient on the GUI thread (a million of them there took 0.7 s)."""
    path, _tensors = _checkpoint(tmp_path, 2_000)
    taken = _record_thread(monkeypatch, session_module.Session, "gradients")
    _open_and_wait(window, qtbot, path)
    assert all(not list(args[1]) for _thread, args in taken)
    assert window.state.session.grad_norms == dict.fromkeys(window.state.session.report.parameters)


def test_statistics_come_in_parts_from_one_walk_of_the_model(window, qtbot, tmp_path, monkeypatch) -> None:
    """Each part the window stores is at most PART_TENSORS summaries (storing a million at once
    held the GUI thread 0.4 s), and the model is walked once for all parts, not once per part."""
    import paramscope.core.model.model_statistics as model_statistics
    import paramscope.gui.app.statistics_worker as statistics_module

    path, tensors = _checkpoint(tmp_path, 2_000)
    monkeypatch.setattr(statistics_module, "PART_TENSORS", 300)
    stored = _record_thread(monkeypatch, session_module.Session, "store_summaries")
    walks = [_record_thread(monkeypatch, module, "named_tensors") for module in (statistics_module, model_statistics)]
    _open_and_wait(window, qtbot, path)
    sizes = [len(args[1]) for _thread, args in stored]
    assert max(sizes) <= 300 and sum(sizes) >= 2_000 and sum(map(len, walks)) == 1
    name = "blocks.150.layers.3.weight"
    assert window.state.session.summaries[name].stats.max == float(tensors[name].max())


def test_a_rescue_check_ends_with_its_window(qtbot, tmp_path, monkeypatch) -> None:
    """The check that a replaced model went (see expect_freed) belongs to its window: once the
    window is gone it unfreezes nothing (it did, seconds later, under another window or test,
    whose frozen objects then went back to the collector)."""
    from paramscope.gui.app.main_window import MainWindow

    path = tmp_path / "looped.pt"
    torch.save(Looped(), path)
    other, _ = _checkpoint(tmp_path, 100)
    monkeypatch.setattr(workers, "FREED_WITHIN_MS", 300)
    unfrozen: list[bool] = []
    monkeypatch.setattr(workers.gc, "unfreeze", lambda: unfrozen.append(True))
    window = MainWindow(interactive=False)
    window.show()
    _open_and_wait(window, qtbot, path, trust=True)
    _open_and_wait(window, qtbot, other)  # the looped model stays: a check is due in 0.3 s
    window.statistics.cancel_and_wait()
    window.close()
    window.deleteLater()
    qtbot.wait(1_000)
    assert unfrozen == []
