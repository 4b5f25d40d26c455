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
