"""The Initialize panel's footer: how much undo memory the edits take, and Export as a script.

The script (:func:`paramscope.core.edit.replay.replay_script`) replays the session's edits on a fresh
model; the label says how much of the undo stack's memory limit is used and what was dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QWidget

from paramscope.gui.state import AppState
from paramscope.gui.widths import wrapping


class ReplayFooter(QWidget):
    """Undo memory and "Export edits as Python script…"; errors go to ``on_error``."""

    def __init__(self, state: AppState, on_error: Callable[[str], None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.on_error = on_error
        self.undo_label = wrapping(QLabel())
        self.script_button = QPushButton("Export edits as Python script…")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.undo_label, 1)
        layout.addWidget(self.script_button)
        self.script_button.clicked.connect(self.export_script_dialog)
        state.sessionChanged.connect(self.update_undo_label)
        state.tensorsChanged.connect(lambda _names: self.update_undo_label())
        self.update_undo_label()

    def update_undo_label(self) -> None:
        if not self.state.has_session:
            self.undo_label.setText("")
            return
        stack = self.state.session.stack
        text = f"Undo memory: {stack.nbytes / 2**20:.1f} of {stack.limit_bytes / 2**20:.0f} MiB"
        if stack.dropped:
            text += f"; {stack.dropped} oldest change(s) dropped, no longer undoable"
        self.undo_label.setText(text)

    def export_script_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export edits as a Python script", "replay.py", "Python (*.py)")
        if path:
            self.export_script(Path(path))

    def export_script(self, path: Path) -> str | None:
        """Write the session's edits as a script that replays them on a fresh model.

        Returns the message to show, or None after reporting the error.
        """
        from paramscope.core.edit.replay import replay_script
        from paramscope.core.files.atomic import write_text_atomically

        try:
            write_text_atomically(path, replay_script(self.state.session))
        except OSError as exc:
            self.on_error(f"{path}: cannot write the script: {exc.strerror or exc}")
            return None
        return f"wrote {path}: run it with python to replay these edits on a fresh model"
