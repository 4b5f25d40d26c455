"""Run inside the real ``python -m paramscope`` (PARAMSCOPE_SELFTEST): walk the tutorial through
the real widgets on a real X display, measure the layout, take screenshots, write results.json.

Globals given by the app: ``window`` (the MainWindow) and ``app``. Output folder:
``PARAMSCOPE_SELFTEST_OUT``. Not a test module itself: tests/gui/test_real_launch.py runs it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QPalette
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractScrollArea, QDockWidget, QPushButton, QScrollArea

OUT = Path(os.environ["PARAMSCOPE_SELFTEST_OUT"])
results: dict[str, object] = {"stages": {}}
window = globals()["window"]
app = globals()["app"]


def wait_until(condition, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        QTest.qWait(50)
    return False


def settle() -> None:
    for _ in range(4):
        QTest.qWait(60)


def viewport_of(widget) -> QRect:
    """The rectangle (global) through which ``widget`` is seen: its nearest scroll area's viewport."""
    parent = widget.parentWidget()
    while parent is not None:
        area = parent.parentWidget()
        if isinstance(area, QAbstractScrollArea) and area.viewport() is parent:
            return QRect(parent.mapToGlobal(QPoint(0, 0)), parent.size())
        if isinstance(parent, QDockWidget):
            content = parent.widget()
            return QRect(content.mapToGlobal(QPoint(0, 0)), content.size())
        parent = area if area is not None and isinstance(area, QAbstractScrollArea) else parent.parentWidget()
    return QRect()


def clipped_buttons() -> list[str]:
    """Buttons cut off sideways: a horizontal scroll would be needed to reach them. (Vertical
    scrolling is fine: a long form scrolls down.)"""
    bad = []
    for dock in window.findChildren(QDockWidget):
        if not dock.isVisible() or dock.visibleRegion().isEmpty():
            continue
        for button in dock.findChildren(QPushButton):
            if not button.isVisible():
                continue
            rect = QRect(button.mapToGlobal(QPoint(0, 0)), button.size())
            port = viewport_of(button)
            if rect.left() < port.left() or rect.right() > port.right():
                bad.append(f"{dock.windowTitle()}: {button.text()!r} {rect.getRect()} outside {port.getRect()}")
    return bad


def horizontal_scrollbars() -> list[str]:
    """Docks with a form scrolled sideways (item views may scroll: their columns are the user's)."""
    shown = []
    for dock in window.findChildren(QDockWidget):
        if not dock.isVisible():
            continue
        for area in [dock.widget(), *dock.findChildren(QScrollArea)]:
            if isinstance(area, QScrollArea) and area.horizontalScrollBar().isVisible():
                shown.append(f"{dock.windowTitle()} ({area.objectName() or type(area).__name__})")
    return shown


def shown_width(*docks) -> int:
    """The width of the dock in front (a dock behind a tab keeps a stale size)."""
    return next(d.width() for d in docks if not d.visibleRegion().isEmpty())


def measure(stage: str) -> None:
    settle()
    view = window.histogram_panel.view
    screen = window.screen().availableGeometry()
    frame = window.frameGeometry()
    results["stages"][stage] = {
        "plot_background": view.plot_widget.backgroundBrush().color().name(),
        "palette_base": app.palette().color(QPalette.ColorRole.Base).name(),
        "clipped_buttons": clipped_buttons(),
        "horizontal_scrollbars": horizontal_scrollbars(),
        "right_dock_width": shown_width(window.init_dock, window.backward_dock),
        "plot_size": [view.plot_widget.width(), view.plot_widget.height()],
        "window": list(frame.getRect()),
        "screen": list(screen.getRect()),
        "fits_screen": screen.contains(window.geometry()),
        "selected_tensor": window.state.selected_tensor,
        "histogram_shown": view.current is not None,
    }
    app.primaryScreen().grabWindow(0).save(str(OUT / f"{stage}.png"), "PNG")


def stats_done() -> bool:
    return window.state.has_session and window.statistics.complete


try:
    results["org"] = app.organizationName()
    results["stylesheet"] = bool(app.styleSheet())
    wait_until(lambda: window.isVisible() and stats_done())
    measure("start")

    window.raise_dock(window.backward_dock)
    settle()
    QTest.mouseClick(window.backward_panel.run_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not window.backward_panel.is_running and window.backward_panel.table.model().rowCount() > 0)
    measure("after_backward")

    window.raise_dock(window.init_dock)
    settle()
    QTest.mouseClick(window.init_panel.preview_button, Qt.MouseButton.LeftButton)
    settle()
    measure("after_preview")

    window.open_source("demo:deep_mlp")
    wait_until(stats_done)
    window.raise_dock(window.init_dock)
    QTest.mouseClick(window.init_panel.preview_button, Qt.MouseButton.LeftButton)
    measure("deep_model")
    window.raise_dock(window.backward_dock)
    QTest.mouseClick(window.backward_panel.run_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not window.backward_panel.is_running)
    measure("deep_backward")

    window.open_source(str(Path(__file__).with_name("long_names_model.py")) + ":model", trust=True)
    wait_until(stats_done)
    window.raise_dock(window.init_dock)
    window.init_panel.target_mode.setCurrentIndex(2)  # a rule: every weight, long names listed
    QTest.mouseClick(window.init_panel.preview_button, Qt.MouseButton.LeftButton)
    measure("long_names")
    window.raise_dock(window.backward_dock)
    QTest.mouseClick(window.backward_panel.run_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: not window.backward_panel.is_running)
    measure("long_names_backward")
    results["ok"] = True
finally:
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    app.exit(0 if results.get("ok") else 4)
