"""Preview draws in the main histogram (before / after / theory), zooms to the new values, and a
large one is computed off the GUI thread."""

from __future__ import annotations

import threading

import torch

from paramscope.gui.panels import init_panel as init_module


def _preview_normal(window, qtbot, std: float = 0.01) -> None:
    panel = window.init_panel
    window.state.select_tensor("0.weight")
    panel.set_initializer("normal_")
    panel.set_field("std", std)
    panel.seed_edit.setText("7")
    window.tabs.setCurrentWidget(window.value_grid)  # the preview brings the histogram to the front
    with qtbot.waitSignal(panel.previewReady, timeout=60_000):
        qtbot.mouseClick(panel.preview_button, __import__("PySide6.QtCore").QtCore.Qt.MouseButton.LeftButton)


def _legend_labels(view) -> list[str]:
    return [label.text for _, label in view.legend.items]


def test_preview_draws_before_after_and_theory_in_the_main_histogram(open_demo, qtbot):
    window = open_demo("mlp")
    before = window.state.session.tensor("0.weight").detach().clone()
    _preview_normal(window, qtbot)
    panel = window.histogram_panel
    view = panel.view
    assert window.tabs.currentWidget() is panel
    assert panel.preview_shown == "0.weight"
    assert view.current.total == 12 and view.previous is not None
    assert view.current_item.isVisible() and view.previous_item.isVisible() and view.theory_item.isVisible()
    assert _legend_labels(view) == ["after (preview)", "before", "normal_, mean=0, std=0.01"]
    assert "preview" in view.fitted_title.text
    assert torch.equal(window.state.session.tensor("0.weight"), before)  # the model is unchanged
    # Legends never cover bars: the legend lies outside the plotting area.
    area = view.plot.getViewBox()
    qtbot.waitUntil(lambda: view.legend.sceneBoundingRect().top() > 0)  # laid out
    assert not view.legend.sceneBoundingRect().intersects(area.sceneBoundingRect())
    # Apply replaces the preview by the real before / after.
    assert window.init_panel.apply()
    assert panel.preview_shown is None
    assert _legend_labels(view)[:2] == ["now", "before"]


def test_zoom_to_new_values_fits_the_x_axis_to_the_sliver(open_demo, qtbot):
    window = open_demo("mlp")  # Linear(4, 3): weights uniform in ±0.5
    _preview_normal(window, qtbot, std=0.01)
    view = window.histogram_panel.view
    assert view.zoom_new.isEnabled()
    low, high = view.x_range()
    assert high - low > 0.5  # the old range: the new values are a sliver
    view.zoom_new.setChecked(True)
    low, high = view.x_range()
    new = view.current.edges
    assert high - low < 0.2 and low <= float(new[0]) and high >= float(new[-1])
    view.zoom_new.setChecked(False)
    assert view.x_range()[1] - view.x_range()[0] > 0.5


def test_zoom_is_off_without_an_old_histogram(open_demo):
    window = open_demo("mlp")
    window.state.select_tensor("0.weight")
    assert not window.histogram_panel.view.zoom_new.isEnabled()


def test_a_large_preview_runs_in_the_worker(open_demo, qtbot, monkeypatch):
    window = open_demo("mlp")
    monkeypatch.setattr(init_module, "BACKGROUND_NUMEL", 0)  # every preview counts as large
    threads: list[threading.Thread] = []
    real = init_module.compute_preview

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(init_module, "compute_preview", recording)
    window.state.select_tensor("0.weight")
    panel = window.init_panel
    with qtbot.waitSignal(panel.previewReady, timeout=60_000):
        assert panel.preview()
        assert panel.is_staging and not panel.apply_button.isEnabled()  # the model is busy meanwhile
        assert window.state.model_busy == "preview"
    qtbot.waitUntil(lambda: not panel.is_staging)
    assert threads and threads[0] is not threading.main_thread()
    assert window.histogram_panel.preview_shown == "0.weight"
    assert window.state.model_busy is None and panel.apply_button.isEnabled()
