"""File > Open series…: which checkpoints of a run to compare, as a glob, a folder, files or URLs.

One line takes what ``paramscope series`` takes (several entries separated by spaces, quoted
where a path has spaces); Files… and Folder… fill it in. Below it, what the line matches, in
the order the series will use (by step), so a wrong glob is seen before anything is read.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.errors import ParamscopeError
from paramscope.core.runs.series import find_checkpoints, ordered

LAST_SERIES_KEY = "series/last"
SHOWN_STEPS = 8  # the preview lists this many steps at most (the last one included)


def split_specs(text: str) -> list[str]:
    """Entries of the line: shell-like words, so a quoted path may hold spaces."""
    try:
        return shlex.split(text, posix=os.name != "nt")
    except ValueError:  # an unclosed quote while typing
        return text.split()


def joined_specs(specs: list[str]) -> str:
    return " ".join(shlex.quote(s) if os.name != "nt" else f'"{s}"' if " " in s else s for s in specs)


def describe_match(specs: list[str]) -> tuple[bool, str]:
    """(usable, what the entries match, in the series' order), or (False, why not)."""
    if not specs:
        return False, "A glob (ckpts/step-*.safetensors), a run's folder, or two or more files or URLs."
    try:
        sources, steps = ordered(find_checkpoints(specs))
    except ParamscopeError as exc:
        return False, str(exc)
    names = [Path(s.rstrip("/")).name or s for s in sources]
    if steps[0] is None:
        order = "in the order given (no step in their names)"
    else:
        labels = [str(t) for t in steps]
        if len(labels) > SHOWN_STEPS:
            labels = [*labels[: SHOWN_STEPS - 1], "…", labels[-1]]
        order = "steps " + ", ".join(labels)
    return True, f"{len(sources)} checkpoints, {order}\nfirst: {names[0]}\nlast: {names[-1]}"


class SeriesDialog(QDialog):
    """Asks for the checkpoints of a series; ``specs()`` gives them once accepted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open series")
        self.line = QLineEdit(str(QSettings().value(LAST_SERIES_KEY, "")))
        self.line.setPlaceholderText("ckpts/step-*.safetensors   or a folder   or FILE1 FILE2 …   (URLs too)")
        self.line.setMinimumWidth(520)
        files_button = QPushButton("Files…")
        files_button.setToolTip("Pick two or more checkpoint files")
        files_button.clicked.connect(self._choose_files)
        folder_button = QPushButton("Folder…")
        folder_button.setToolTip("A run's folder: its checkpoint files, or its numbered checkpoint folders (DCP too)")
        folder_button.clicked.connect(self._choose_folder)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.preview.setMinimumHeight(self.preview.fontMetrics().lineSpacing() * 3 + 4)  # never clipped
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        self.open_button = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.line, 1)
        row.addWidget(files_button)
        row.addWidget(folder_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Checkpoints of one run, ordered by the step in their names:"))
        layout.addLayout(row)
        layout.addWidget(self.preview)
        layout.addWidget(self.buttons)
        self.line.textChanged.connect(self._update_preview)
        self._update_preview()

    def specs(self) -> list[str]:
        return split_specs(self.line.text())

    def accept(self) -> None:
        if not self.open_button.isEnabled():
            return
        QSettings().setValue(LAST_SERIES_KEY, self.line.text())
        super().accept()

    def _update_preview(self) -> None:
        usable, text = describe_match(self.specs())
        self.preview.setText(text)
        self.open_button.setEnabled(usable)

    def _start_folder(self) -> str:
        specs = self.specs()
        first = Path(specs[0]).expanduser() if specs else Path.home()
        return str(first if first.is_dir() else first.parent if first.parent.is_dir() else Path.home())

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Checkpoints of one run", self._start_folder())
        if files:
            self.line.setText(joined_specs(files))

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A run's folder of checkpoints", self._start_folder())
        if folder:
            self.line.setText(joined_specs([folder]))
