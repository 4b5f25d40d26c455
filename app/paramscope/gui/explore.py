"""``paramscope.explore(model)``: the window on a live model in the caller's own process."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QCoreApplication, QThread
from torch import nn

from paramscope.core.sources import OpenedModel
from paramscope.gui.app import ensure_app
from paramscope.gui.main_window import MainWindow

_open_windows: list[MainWindow] = []  # a window shown without blocking must outlive the call


def explore(model: nn.Module, inputs: Any = None) -> str | MainWindow:
    """Open the paramscope window on ``model``; edits change ``model`` itself.

    Args:
        model: the live module to look at.
        inputs: a sample input for forward/backward (kept in ``OpenedModel.extras["inputs"]``
            for the panels that run the model).

    Returns:
        When no Qt event loop was running: blocks until the window closes and returns a short
        summary of what changed. When one is running (IPython ``%gui qt``, a host app): returns
        the window at once.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> print(paramscope.explore(net))  # doctest: +SKIP
        no changes
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"explore() needs an nn.Module, got {type(model).__name__}")
    had_app = QCoreApplication.instance() is not None
    app = ensure_app()
    opened = OpenedModel(model, "live model", "live")
    if inputs is not None:
        opened.extras["inputs"] = inputs
    window = MainWindow()
    window.open_model(opened)
    window.show()
    if had_app and QThread.currentThread().loopLevel() > 0:  # called from inside a running loop
        _open_windows.append(window)
        window.destroyed.connect(lambda *_: _open_windows.remove(window) if window in _open_windows else None)
        return window
    window.closed.connect(app.quit)  # other top-level windows must not keep the caller waiting
    app.exec()
    return summarize_changes(window)


def summarize_changes(window: MainWindow) -> str:
    """One line per command in effect, e.g. ``2 changes: init 0.weight; scale 0.bias``."""
    if not window.state.has_session:
        return "no model"
    history = window.state.session.stack.history
    if not history:
        return "no changes"
    return f"{len(history)} change{'s' if len(history) != 1 else ''}: " + "; ".join(c.text for c in history)
