"""The Initialize panel's Initializer and Edit values boxes, bound to the core state objects.

:class:`InitializerBox` edits ``InitState`` (initializer, arguments, custom code, seed, skip)
and holds the Preview / Apply buttons; :class:`ValueEditBox` edits ``ValueEditState``. The
buttons are wired by the panel, which runs the requests.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.edit.value_edits import EDIT_KINDS
from paramscope.core.init.initializers import CATALOGUE
from paramscope.core.state.init_state import CUSTOM, InitState, ValueEditState
from paramscope.gui.bind import (
    bind_check,
    bind_combo_data,
    bind_combo_text,
    bind_line,
    bind_spin,
    on_change,
)
from paramscope.gui.panels.init_params_form import CustomCodeBox, ParamsForm
from paramscope.gui.widths import narrow_combo, shrinkable_spin


def initializer_combo() -> QComboBox:
    """Every initializer of the catalogue (its title as tooltip), then a custom function."""
    combo = QComboBox()
    for name, entry in CATALOGUE.items():
        combo.addItem("default (reset_parameters())" if name == "default" else name, name)
        combo.setItemData(combo.count() - 1, entry.title, Qt.ItemDataRole.ToolTipRole)
    combo.addItem("custom Python function", CUSTOM)
    return narrow_combo(combo)


class InitializerBox(QGroupBox):
    """Initializer, its arguments (or custom code), seed, skip refused, Preview and Apply."""

    def __init__(self, state: InitState, parent: QWidget | None = None) -> None:
        super().__init__("Initializer", parent)
        self.initializer_combo = initializer_combo()
        self.form = ParamsForm(state)
        self.custom = CustomCodeBox(state)
        self.seed_edit = QLineEdit()
        self.seed_edit.setPlaceholderText("random (shown after use)")
        self.skip_refused = QCheckBox("Skip tensors it cannot apply to")
        self.preview_button = QPushButton("Preview")
        self.apply_button = QPushButton("Apply")
        self.theory_label = QLabel()
        self.theory_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.initializer_combo)
        layout.addWidget(self.form)
        layout.addWidget(self.custom)
        seed_row = QHBoxLayout()
        seed_row.addWidget(QLabel("Seed:"))
        seed_row.addWidget(self.seed_edit, 1)
        layout.addLayout(seed_row)
        layout.addWidget(self.skip_refused)
        buttons = QHBoxLayout()
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.apply_button)
        layout.addLayout(buttons)
        layout.addWidget(self.theory_label)
        bind_combo_data(self.initializer_combo, state, "initializer")
        bind_line(self.seed_edit, state, "seed_text")
        bind_check(self.skip_refused, state, "skip_refused")
        on_change(self, state, "initializer", lambda name: self.custom.setVisible(name == CUSTOM))
        self.custom.setVisible(state.initializer == CUSTOM)


def _value_spin(value: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setDecimals(6)
    spin.setRange(-1e9, 1e9)
    spin.setValue(value)
    shrinkable_spin(spin)
    return spin


class ValueEditBox(QGroupBox):
    """Add, multiply, set, clamp or an expression in x, and Apply edit."""

    def __init__(self, state: ValueEditState, parent: QWidget | None = None) -> None:
        super().__init__("Edit values", parent)  # a long title would set the dock's minimum width
        self.setToolTip("Outside autograd, like param.data += 1 (undoable here)")
        self.state = state
        self.edit_kind = narrow_combo(QComboBox())
        self.edit_kind.addItems(list(EDIT_KINDS))
        self.edit_value = _value_spin(state.value)
        self.clamp_low = _value_spin(state.low)
        self.clamp_high = _value_spin(state.high)
        self.expression_edit = QLineEdit()
        self.edit_button = QPushButton("Apply edit")
        layout = QFormLayout(self)
        layout.addRow("Edit:", self.edit_kind)
        layout.addRow("Value:", self.edit_value)
        layout.addRow("Clamp from:", self.clamp_low)
        layout.addRow("Clamp to:", self.clamp_high)
        layout.addRow("Expression in x:", self.expression_edit)
        layout.addRow(self.edit_button)
        bind_combo_text(self.edit_kind, state, "kind")
        bind_spin(self.edit_value, state, "value")
        bind_spin(self.clamp_low, state, "low")
        bind_spin(self.clamp_high, state, "high")
        bind_line(self.expression_edit, state, "expression")
        on_change(self, state, "kind", lambda _kind: self.show_used_fields())
        self.show_used_fields()

    def show_used_fields(self) -> None:
        """Only the fields the chosen kind of edit reads are enabled."""
        used = self.state.uses()
        self.edit_value.setEnabled(used["value"])
        self.clamp_low.setEnabled(used["low"])
        self.clamp_high.setEnabled(used["high"])
        self.expression_edit.setEnabled(used["expression"])
