"""Before the window closes or another model opens: ask about edits that were not saved.

A file's model offers Save (a state_dict), Discard or Cancel; a live model from ``explore()``
keeps its edits anyway, so the question only offers a state_dict copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox

if TYPE_CHECKING:  # pragma: no cover
    from paramscope.gui.app.main_window import MainWindow

Button = QMessageBox.StandardButton


def maybe_save(window: MainWindow) -> bool:
    """Ask about unsaved edits (Save exports a state_dict). True: go on, False: cancelled."""
    state = window.state
    if not state.has_session or not state.session.modified or not window.interactive:
        return True
    if state.session.opened.kind == "live":
        return _close_live(window)
    answer = QMessageBox.question(
        window,
        "Unsaved changes",
        f"{state.session.opened.title} has changes that were not exported. Save them as a state_dict?",
        Button.Save | Button.Discard | Button.Cancel,
        Button.Cancel,
    )
    if answer == Button.Save:
        return save_before_closing(window)
    return answer == Button.Discard


def _close_live(window: MainWindow) -> bool:
    """explore(): the edits are already on the caller's model; say so, offer a state_dict too."""
    count = len(window.state.session.stack.history)
    answer = QMessageBox.question(
        window,
        "Close paramscope",
        f"The {count} edit{'s' if count != 1 else ''} stay on the live model in your Python session "
        "(undo ends when this window closes). Also save a copy as a state_dict?",
        Button.Save | Button.Close | Button.Cancel,
        Button.Close,
    )
    if answer == Button.Save:
        return save_before_closing(window)
    return answer == Button.Close


def save_before_closing(window: MainWindow) -> bool:
    """Ask where, then export the state_dict; True when it was written."""
    path = window.files_actions.ask_save_path()
    return path is not None and window.files_actions.save_now(path)
