"""The Backward panel's form, bound to the core ``BackwardState``: input, seed, mode, loss, buttons.

Short rows, so the dock keeps its width at ~300 px (nothing behind a horizontal scrollbar). The
widgets only edit and show the state; the panel wires Default, Run backward and Zero grad.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from paramscope.core.backward.losses import LOSSES
from paramscope.core.state.backward_state import MODES, BackwardState
from paramscope.gui.bind import (
    bind_check,
    bind_combo_data,
    bind_combo_text,
    bind_line,
    bind_spin,
    on_change,
)
from paramscope.gui.widths import narrow_combo, shrinkable_spin

INPUT_TIP = (
    "rand(2,4), randn(...), ones(...), zeros(...), randint(2,16,high=100), dtype=float64, "
    "or a .pt file; several inputs separated by ';'"
)


class BackwardForm(QWidget):
    """Input (with Default), seed and mode, loss and Accumulate, Run backward and Zero grad."""

    def __init__(self, state: BackwardState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._make_widgets()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Input", _row(self.input_edit, self.default_button, stretch_first=True))
        form.addRow("Seed", _row(self.seed_spin, QLabel("mode"), self.mode_combo, stretch_last=True))
        form.addRow("Loss", _row(self.loss_combo, self.accumulate_box, stretch_first=True))
        # A row of its own: the panel stays usable in a narrow dock.
        form.addRow("", _row(self.run_button, self.zero_button, stretch_before=True))
        bind_line(self.input_edit, state, "input_text")
        bind_spin(self.seed_spin, state, "seed")
        bind_combo_data(self.loss_combo, state, "loss")
        bind_combo_text(self.mode_combo, state, "mode")
        bind_check(self.accumulate_box, state, "accumulate")
        on_change(self, state, "input_note", self._show_note)
        self._show_note(state.input_note)

    def _make_widgets(self) -> None:
        self.input_edit = QLineEdit()
        self.input_edit.setToolTip(INPUT_TIP)
        self.default_button = QPushButton("Default")
        self.default_button.setToolTip("The input inferred from the model's first layer")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        shrinkable_spin(self.seed_spin)
        self.seed_spin.setToolTip("Seed of random inputs, cross-entropy labels and dropout")
        self.loss_combo = narrow_combo(QComboBox())
        for name, loss in LOSSES.items():
            self.loss_combo.addItem(name, name)
            self.loss_combo.setItemData(self.loss_combo.count() - 1, loss.description, Qt.ItemDataRole.ToolTipRole)
        self.mode_combo = narrow_combo(QComboBox(), 6)
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip("Module mode during the pass (restored afterwards, with BatchNorm statistics)")
        self.accumulate_box = QCheckBox("Accumulate")
        self.accumulate_box.setToolTip("Add to existing .grad as PyTorch does; unchecked replaces it")
        self.run_button = QPushButton("Run backward")
        self.zero_button = QPushButton("Zero grad")
        self.zero_button.setToolTip("Set every .grad to None, as before any backward")
        self.input_note = QLabel()  # why the default input is what it is (placed by the panel)
        self.input_note.setWordWrap(True)

    def _show_note(self, note: str) -> None:
        self.input_note.setText(note)
        self.input_note.setVisible(bool(note))


def _row(*widgets: QWidget, stretch_first: bool = False, stretch_last: bool = False,
         stretch_before: bool = False) -> QHBoxLayout:  # fmt: skip
    row = QHBoxLayout()
    if stretch_before:
        row.addStretch(1)
    for i, widget in enumerate(widgets):
        row.addWidget(widget, 1 if stretch_first and i == 0 else 0)
    if stretch_last:
        row.addStretch(1)
    return row
