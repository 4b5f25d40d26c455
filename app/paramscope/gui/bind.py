"""Bind widgets to fields of a core :class:`~paramscope.core.observable.State`, both ways.

An edit in the widget sets the field; a change of the field (from the API, a test, another
widget) is shown in the widget. Fields only tell their listeners about *different* values, so
the round trip ends after one step: a spin box that rounds 1e-7 to 0 writes 0 back, and stops.
The widget shows the field's value at once when bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)

from paramscope.core.observable import State


def on_change(widget: QWidget, state: State, name: str, callback: Callable[[Any], None]) -> None:
    """``callback(value)`` after field ``name`` changes, for as long as ``widget`` lives."""
    listener = state.add_callback(name, callback)
    widget.destroyed.connect(lambda *_: state.remove_listener(listener))


def _bind(state: State, name: str, show: Callable[[Any], None], widget: QWidget) -> None:
    on_change(widget, state, name, show)
    show(getattr(state, name))


def bind_line(edit: QLineEdit, state: State, name: str) -> None:
    def show(value: Any) -> None:
        if edit.text() != str(value):  # setText would move the cursor while the user types
            edit.setText(str(value))

    edit.textChanged.connect(lambda text: setattr(state, name, text))
    _bind(state, name, show, edit)


def bind_plain_text(editor: QPlainTextEdit, state: State, name: str) -> None:
    def show(value: Any) -> None:
        if editor.toPlainText() != str(value):
            editor.setPlainText(str(value))

    editor.textChanged.connect(lambda: setattr(state, name, editor.toPlainText()))
    _bind(state, name, show, editor)


def bind_check(box: QCheckBox, state: State, name: str) -> None:
    box.toggled.connect(lambda checked: setattr(state, name, checked))
    _bind(state, name, lambda value: box.setChecked(bool(value)), box)


def bind_combo_data(combo: QComboBox, state: State, name: str) -> None:
    """The field holds the current item's data (an initializer's name, a target mode)."""

    def show(value: Any) -> None:
        index = combo.findData(value)
        if index >= 0:
            combo.setCurrentIndex(index)

    combo.currentIndexChanged.connect(lambda _index: setattr(state, name, combo.currentData()))
    _bind(state, name, show, combo)


def bind_combo_text(combo: QComboBox, state: State, name: str) -> None:
    combo.currentTextChanged.connect(lambda text: setattr(state, name, text))
    _bind(state, name, lambda value: combo.setCurrentText(str(value)), combo)


def bind_spin(spin: QSpinBox | QDoubleSpinBox, state: State, name: str) -> None:
    spin.valueChanged.connect(lambda value: setattr(state, name, value))
    _bind(state, name, spin.setValue, spin)
