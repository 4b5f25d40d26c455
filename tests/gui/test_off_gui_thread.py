"""Work stays off the GUI thread: gradient norms, large heatmaps and previews come from workers
(or from results already computed), and a result that went stale meanwhile is dropped."""

from __future__ import annotations

import threading

import torch
from PySide6.QtCore import QCoreApplication, Qt
from torch import nn

import paramscope.core.model.heatmap as core_heatmap
import paramscope.gui.app.statistics_worker as statistics_module
from paramscope.core.edit.session import Session
from paramscope.core.sources.sources import OpenedModel
from paramscope.gui.models.param_table import COL_GRAD_NORM, fmt_float
from paramscope.gui.plots import heatmap_view as heatmap_module
from paramscope.gui.plots.heatmap_view import HeatmapView
from paramscope.gui.state import AppState


def _grad_norm_texts(window) -> dict[str, str]:
    model = window.param_panel.model
    return {model.info(r).name: model.index(r, COL_GRAD_NORM).data() for r in range(model.rowCount())}


def _record_threads(monkeypatch, module, name: str) -> list[threading.Thread]:
    threads: list[threading.Thread] = []
    real = getattr(module, name)

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return threads


def test_the_grad_norm_column_reads_the_backwards_results_and_paints_without_torch(open_demo, qtbot, monkeypatch):
    window = open_demo("mlp")
    window.state.select_module("")
    assert set(_grad_norm_texts(window).values()) == {"None"}
    with qtbot.waitSignal(window.backward_panel.finished, timeout=60_000):
        window.backward_panel.run_backward()
    calls: list[str] = []
    for method in ("norm", "double", "to"):  # what measuring a .grad takes
        real = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method, lambda self, *a, _m=method, _r=real, **k: (calls.append(_m), _r(self, *a, **k))[1])
    texts = _grad_norm_texts(window)
    window.param_panel.view.viewport().grab()  # a paint of every visible cell
    assert calls == []
    monkeypatch.undo()
    session = window.state.session
    for name in session.report.parameters:
        assert texts[name] == fmt_float(float(session.tensor(name).grad.double().norm())), name


def test_gradients_from_elsewhere_are_measured_in_the_statistics_worker(window, qtbot, monkeypatch):
    model = nn.Linear(4, 3)
    model(torch.ones(2, 4)).sum().backward()  # a live model that already has .grad
    threads = _record_threads(monkeypatch, statistics_module, "compute_grad_norms")
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        window.open_model(OpenedModel(model, "live model", "live"))
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert _grad_norm_texts(window)["weight"] == fmt_float(float(model.weight.grad.double().norm()))



def test_the_worker_gets_the_gradients_not_the_parameters(window, qtbot, monkeypatch):
    """Zero grad sets ``.grad`` to None on the GUI thread; a worker reading ``param.grad`` at that
    moment crashed the process, so the worker is handed the gradient tensors themselves."""
    model = nn.Linear(4, 3)
    model(torch.ones(2, 4)).sum().backward()
    handed: list[dict] = []
    real = statistics_module.compute_grad_norms
    monkeypatch.setattr(statistics_module, "compute_grad_norms", lambda grads, *a, **k: (handed.append(dict(grads)), real(grads, *a, **k))[1])
    with qtbot.waitSignal(window.statistics.allDone, timeout=60_000):
        window.open_model(OpenedModel(model, "live model", "live"))
    (grads,) = handed
    assert grads["weight"] is model.weight.grad and grads["bias"] is model.bias.grad
    assert not any(isinstance(g, nn.Parameter) for g in grads.values())


def _large_view(qtbot) -> tuple[HeatmapView, AppState]:
    state = AppState(Session(OpenedModel(nn.Sequential(nn.Linear(1500, 400), nn.Linear(400, 3)), "big", "live")))
    view = HeatmapView(state)
    qtbot.addWidget(view)
    view.show()
    return view, state


def test_a_large_heatmap_is_reduced_in_a_worker(qtbot, monkeypatch):
    view, state = _large_view(qtbot)
    threads = _record_threads(monkeypatch, core_heatmap, "block_maxabs")
    assert state.session.report.tensor("0.weight").numel > heatmap_module.BACKGROUND_NUMEL
    with qtbot.waitSignal(view.shown, timeout=60_000) as shown:
        state.select_tensor("0.weight")
        assert view.array is None and "computing" in view.message.text()  # not on this thread
    assert shown.args == ["0.weight"] and threads and threads[0] is not threading.main_thread()
    assert view.factor == 3 and view.array.shape == (134, 500) and "downsampled 3×" in view.title
    threads.clear()
    with qtbot.waitSignal(view.shown):
        state.select_tensor("1.weight")  # small: at once, here
    assert threads == [threading.main_thread()] and view.array.shape == (3, 400)


def test_a_heatmap_of_a_tensor_no_longer_selected_is_not_drawn(qtbot, monkeypatch):
    view, state = _large_view(qtbot)
    monkeypatch.setattr(heatmap_module, "BACKGROUND_NUMEL", 0)  # every heatmap in the worker
    release = threading.Event()
    real = core_heatmap.block_maxabs
    monkeypatch.setattr(core_heatmap, "block_maxabs", lambda *a, **k: (release.wait(30), real(*a, **k))[1])
    state.select_tensor("0.weight")
    with qtbot.waitSignal(view.shown, timeout=60_000) as shown:
        state.select_tensor("1.weight")  # while 0.weight is still being reduced
        release.set()
    assert shown.args == ["1.weight"]
    view.worker.wait()
    QCoreApplication.processEvents()  # anything the first reduction still sent arrives now
    assert "1.weight" in view.title and view.array.shape == (3, 400)


def test_preview_runs_in_the_worker_and_a_stale_one_is_dropped(open_demo, qtbot, monkeypatch):
    from paramscope.gui.panels import init_panel as init_module

    window = open_demo("mlp")
    panel, state = window.init_panel, window.state
    threads = _record_threads(monkeypatch, init_module, "compute_preview")
    state.select_tensor("0.weight")
    panel.set_initializer("normal_")
    with qtbot.assertNotEmitted(panel.previewReady), qtbot.waitSignal(panel.preview_worker.done, timeout=60_000):
        assert panel.preview()
        assert state.model_busy == "preview"
        panel.set_field("std", 0.5)  # the request changes before the result arrives
    assert threads and threads[0] is not threading.main_thread()
    assert "dropped" in panel.message.text()
    assert window.histogram_panel.preview_shown is None and state.model_busy is None and not panel.is_staging
    with qtbot.waitSignal(panel.previewReady, timeout=60_000) as ready:
        qtbot.mouseClick(panel.preview_button, Qt.MouseButton.LeftButton)
    assert ready.args[0] == "0.weight" and ready.args[2][2] == "normal_, mean=0, std=0.5"


def test_a_preview_in_flight_never_widens_the_panel(window, qtbot):
    """The 'computing…' line named the rule's text, which lists every target: on GPT-2's long
    names the Initialize panel grew 14,000 px wide until the preview arrived."""
    from pathlib import Path

    window.open_source(str(Path(__file__).with_name("long_names_model.py")) + ":model", trust=True)
    panel = window.init_panel
    panel.target_mode.setCurrentIndex(2)  # a rule over every weight
    with qtbot.waitSignal(panel.preview_worker.done, timeout=60_000):
        assert panel.preview()
        assert "computing" in panel.message.text()
        content = panel.message.parentWidget()  # inside the scroll area: its width is the dock's
        assert content.minimumSizeHint().width() < 600, panel.message.text()[:200]
