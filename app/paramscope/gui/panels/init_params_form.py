"""The Initialize panel's argument form and custom-code box, bound to the core ``InitState``.

The form has one row per argument of the chosen initializer (from its
:class:`~paramscope.core.init.initializers.ParamSpec`): a spin box, a choice, a check box or a line.
Each widget writes ``InitState.params``; a new initializer (or arguments set from elsewhere) is
shown from the state. The custom box holds the Python text of a user's initializer function.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.init.initializer_base import ParamSpec
from paramscope.core.init.initializers import CATALOGUE
from paramscope.core.observable import same
from paramscope.core.state.init_state import InitState
from paramscope.gui.bind import bind_line, bind_plain_text, on_change
from paramscope.gui.panels.python_highlighter import PythonHighlighter
from paramscope.gui.widths import guard_wheel, narrow_combo, shrinkable_spin
from paramscope.resources import resource_path


def example_source() -> str:
    """The tutorial's bimodal init_weight_, shipped as an example."""
    return resource_path("examples/init_weight.py").read_text(encoding="utf-8")


def widget_for(spec: ParamSpec) -> QWidget:
    """An empty editor for one argument (its value is set from the state)."""
    if spec.kind == "choice":
        box = narrow_combo(QComboBox())
        box.addItems(list(spec.choices))
        return box
    if spec.kind == "bool":
        return QCheckBox()
    if spec.kind == "int":
        spin = QSpinBox()
        spin.setRange(-(2**31), 2**31 - 1)
        return shrinkable_spin(spin)
    if spec.kind == "float":
        double = QDoubleSpinBox()
        double.setDecimals(6)
        double.setRange(-1e9, 1e9)
        double.setSingleStep(0.01)
        return shrinkable_spin(double)
    return QLineEdit()


def value_of(widget: QWidget) -> object:
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QSpinBox | QDoubleSpinBox):
        return widget.value()
    assert isinstance(widget, QLineEdit)
    return widget.text()


def show_value(widget: QWidget, value: Any) -> None:
    """Put ``value`` in ``widget`` (nothing happens when it shows that already)."""
    if same(value_of(widget), value):
        return
    if isinstance(widget, QComboBox):
        widget.setCurrentText(str(value))
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QSpinBox | QDoubleSpinBox):
        widget.setValue(value)
    else:
        widget.setText(str(value))  # type: ignore[attr-defined]


def edited_signal(widget: QWidget) -> Any:
    """The signal a widget sends when the user changes its value."""
    if isinstance(widget, QComboBox):
        return widget.currentTextChanged
    if isinstance(widget, QCheckBox):
        return widget.toggled
    if isinstance(widget, QSpinBox | QDoubleSpinBox):
        return widget.valueChanged
    return widget.textChanged  # type: ignore[attr-defined]


class ParamsForm(QWidget):
    """One row per argument of ``state.initializer``; ``fields`` maps names to their widgets."""

    def __init__(self, state: InitState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.fields: dict[str, QWidget] = {}
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self._shown_for: str | None = None
        on_change(self, state, "initializer", lambda _name: self.sync())
        on_change(self, state, "params", lambda _params: self.sync())
        self.sync()

    def sync(self) -> None:
        """Show the state's initializer and arguments (rows rebuilt only for a new initializer)."""
        if self._shown_for != self.state.initializer or set(self.fields) != set(self.state.params):
            self._rebuild()
        for name, widget in list(self.fields.items()):
            show_value(widget, self.state.params[name])
            if not same(value_of(widget), self.state.params[name]):  # e.g. rounded to the spin's decimals:
                self.state.set_param(name, value_of(widget))  # what is applied is what is shown

    def _rebuild(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields.clear()
        self._shown_for = self.state.initializer
        entry = CATALOGUE.get(self.state.initializer)
        for spec in entry.params if entry is not None else ():
            if spec.name not in self.state.params:
                continue
            widget = widget_for(spec)
            show_value(widget, self.state.params[spec.name])
            edited_signal(widget).connect(lambda _v, n=spec.name, w=widget: self._on_edit(n, w))
            self.fields[spec.name] = widget
            label = spec.name + (" (required)" if spec.required else "")
            self.form.addRow(label + ":", widget)
        guard_wheel(self)

    def _on_edit(self, name: str, widget: QWidget) -> None:
        if name in self.state.params:
            self.state.set_param(name, value_of(widget))


class CustomCodeBox(QWidget):
    """The custom initializer: a warning, the code editor, the function's name and Load file…."""

    def __init__(self, state: InitState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if not state.custom_source:
            state.custom_source = example_source()
        self.warning = QLabel("This code runs as Python in paramscope's process: only run code you trust.")
        self.warning.setWordWrap(True)
        self.editor = QPlainTextEdit()
        self.editor.setMinimumHeight(120)
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))  # code: monospaced
        self.highlighter = PythonHighlighter(self.editor.document(), self.editor)
        self.function = QLineEdit()
        self.function.setPlaceholderText("function name (default: the last one defined)")
        self.load_button = QPushButton("Load file…")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.warning)
        layout.addWidget(self.editor)
        row = QHBoxLayout()
        row.addWidget(QLabel("Function:"))
        row.addWidget(self.function, 1)
        row.addWidget(self.load_button)
        layout.addLayout(row)
        bind_plain_text(self.editor, state, "custom_source")
        bind_line(self.function, state, "custom_function")
