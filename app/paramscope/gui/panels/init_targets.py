"""The Initialize panel's Targets box, bound to the core ``InitState``.

Which tensors an edit hits: the selected tensor, the selected module's parameters, or a rule;
weights and/or biases; and the list of targets the plan found (refused ones say why). The box
only shows and edits the state: the names come from ``InitState.target_names``.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.state.init_state import RULE, SELECTED_MODULE, SELECTED_TENSOR, InitState
from paramscope.gui.bind import bind_check, bind_combo_data, bind_line
from paramscope.gui.widths import narrow_combo

TARGET_MODE_LABELS = {
    SELECTED_TENSOR: "Selected tensor",
    SELECTED_MODULE: "Selected module (all its parameters)",
    RULE: "Rule (glob, re:REGEX, type:Linear)",
}


# Up to this many target lines wrap instead of eliding (a selected tensor and its refusal).
WRAPPED_LINES = 8


def targets_list() -> QListWidget:
    """A short list whose rows are as wide as the list: long names elide instead of scrolling."""
    listing = QListWidget()
    listing.setMaximumHeight(110)
    listing.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # blocks.…3.attn.weight
    listing.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    listing.setResizeMode(QListView.ResizeMode.Adjust)
    listing.setUniformItemSizes(True)  # without it a row takes its text's width
    return listing


class TargetsBox(QGroupBox):
    """Target mode, rule, Include weights / biases, and the targets found."""

    def __init__(self, state: InitState, parent: QWidget | None = None) -> None:
        super().__init__("Targets", parent)
        self.target_mode = narrow_combo(QComboBox())
        for mode, label in TARGET_MODE_LABELS.items():
            self.target_mode.addItem(label, mode)
        self.rule_edit = QLineEdit()
        self.rule_edit.setPlaceholderText("*.weight, 0.*, re:^0\\., type:Linear")
        self.weights_box = QCheckBox("weights")
        self.biases_box = QCheckBox("biases")
        self.targets_list = targets_list()
        layout = QVBoxLayout(self)
        layout.addWidget(self.target_mode)
        layout.addWidget(self.rule_edit)
        row = QHBoxLayout()
        row.addWidget(QLabel("Include:"))
        row.addWidget(self.weights_box)
        row.addWidget(self.biases_box)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addWidget(self.targets_list)
        bind_combo_data(self.target_mode, state, "target_mode")
        bind_line(self.rule_edit, state, "rule_text")
        bind_check(self.weights_box, state, "weights")
        bind_check(self.biases_box, state, "biases")

    def show_lines(self, lines: list[str], rule_mode: bool) -> None:
        """The plan's lines: a few wrap (a refusal's reason is read whole, not cut in the
        middle); many are one row each, elided in the middle (uniform rows lay out at once
        for thousands), in full on hover."""
        self.rule_edit.setEnabled(rule_mode)
        self.targets_list.clear()
        few = len(lines) <= WRAPPED_LINES
        self.targets_list.setUniformItemSizes(not few)
        self.targets_list.setWordWrap(few)
        for line in lines:
            self.targets_list.addItem(line)
            item = self.targets_list.item(self.targets_list.count() - 1)
            item.setToolTip(line)
