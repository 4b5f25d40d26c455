"""``paramscope.explore(model)``: the window on a live model in the caller's own process."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QCoreApplication, QThread
from torch import nn

from paramscope.core.sources.sources import OpenedModel
from paramscope.gui.app.app import ensure_app
from paramscope.gui.app.main_window import MainWindow

_open_windows: list[MainWindow] = []  # a window shown without blocking must outlive the call


def explore(model: nn.Module, inputs: Any = None) -> str | MainWindow:
    """Open the paramscope window on ``model``; edits change ``model`` itself.

    Args:
        model: the live module to look at.
        inputs: a sample input for forward/backward (kept in ``OpenedModel.extras["inputs"]``
            for the panels that run the model).

    Returns:
        When no Qt event loop was running (a plain script, IPython without ``%gui qt``): blocks
        until the window closes and returns a short summary of what changed, e.g.
        ``"2 changes: init 0.weight; add 1 to 0.bias"``. When one is running (IPython or Jupyter
        after ``%gui qt``, a host Qt app): returns the window at once; it stays live, and
        ``summarize_changes(window)`` says what changed so far.

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
    window.fit_to_screen()  # as the paramscope command does (1600x1000 on a 1280x800 screen hid the right dock)
    window.open_model(opened)
    window.show()
    if (had_app and QThread.currentThread().loopLevel() > 0) or ipython_runs_qt():
        # Inside a running loop (a host app, or IPython's %gui qt input hook): do not block.
        _open_windows.append(window)
        window.destroyed.connect(lambda *_: _open_windows.remove(window) if window in _open_windows else None)
        return window
    window.closed.connect(app.quit)  # other top-level windows must not keep the caller waiting
    app.exec()
    return summarize_changes(window)


def ipython_runs_qt() -> bool:
    """True in IPython or Jupyter with a Qt event loop integrated (``%gui qt``).

    Between cells IPython's input hook runs the Qt loop, but while a cell runs the loop level is
    0, so the loop level alone cannot tell; the shell records the active loop.
    """
    import sys

    if "IPython" not in sys.modules:  # never import IPython just to ask
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    if shell is None:
        return False
    loop = getattr(shell, "active_eventloop", None)
    if loop and "qt" in str(loop).lower():
        return True
    kernel_loop = getattr(getattr(shell, "kernel", None), "eventloop", None)
    return kernel_loop is not None and "qt" in getattr(kernel_loop, "__name__", "").lower()


def summarize_changes(window: MainWindow) -> str:
    """One line per command in effect, e.g. ``2 changes: init 0.weight; scale 0.bias``."""
    if not window.state.has_session:
        return "no model"
    history = window.state.session.stack.history
    if not history:
        return "no changes"
    return f"{len(history)} change{'s' if len(history) != 1 else ''}: " + "; ".join(c.text for c in history)
