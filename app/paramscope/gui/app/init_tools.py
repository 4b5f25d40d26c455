"""The window's initialization tools: presets and the comparison of schemes on the signal.

One :class:`InitTools` per window owns the two dialogs (made when first opened, kept after, so
a comparison stays on screen while the user edits), puts them in an *Initialize* menu and on the
Initialize panel's buttons (:class:`~paramscope.gui.panels.init_notes.InitNotes`), and stops their work
when the window closes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QMenu

from paramscope.core.errors import ParamscopeError
from paramscope.core.init.rule_parse import InitRule
from paramscope.gui.panels.compare_dialog import CompareDialog
from paramscope.gui.panels.preset_dialog import PresetDialog

if TYPE_CHECKING:
    from paramscope.gui.app.main_window import MainWindow
    from paramscope.gui.panels.init_panel import InitPanel


def panel_scheme(panel: InitPanel) -> tuple[str, str]:
    """``(label, rule)`` of the Initialize panel's current choice, as compare_schemes takes it.

    The targets are written as one ``re:^(a|b)$`` selector: the panel's list of names has no
    rule syntax of its own.
    """
    name = panel.initializer_name
    if name == "custom":
        raise ParamscopeError("compare: the Initialize panel's custom Python function cannot be compared here; "
                              "save it in a file and add the rule weights=FILE.py:FUNCTION")  # fmt: skip
    names = panel.target_names()
    if not names:
        raise ParamscopeError("compare: the Initialize panel targets nothing: select a tensor or write a rule")
    kwargs = panel.kwargs()
    selector = "re:^(" + "|".join(re.escape(n) for n in names) + ")$"
    rule = InitRule.make(selector, name, **kwargs)
    label = InitRule.make("x", name, **kwargs).text.removeprefix("x=")
    return f"Initialize: {label}", rule.text


class InitTools(QObject):
    """Presets and Compare for ``window`` (see the module docstring)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.preset_dialog: PresetDialog | None = None
        self.compare_dialog: CompareDialog | None = None
        menu = QMenu("&Initialize", window.menuBar())
        window.menuBar().insertMenu(window.help_menu.menuAction(), menu)  # before Help
        self.presets_action = menu.addAction("&Presets…")
        self.presets_action.triggered.connect(self.show_presets)
        self.compare_action = menu.addAction("&Compare schemes on the signal…")
        self.compare_action.triggered.connect(self.show_compare)
        self.menu = menu
        notes = window.init_panel.notes
        notes.presetsRequested.connect(self.show_presets)
        notes.compareRequested.connect(self.show_compare)
        window.closed.connect(self.close)

    def show_presets(self) -> PresetDialog:
        if self.preset_dialog is None:
            self.preset_dialog = PresetDialog(self.window.state, self.window)
        self.preset_dialog.show()
        self.preset_dialog.raise_()
        return self.preset_dialog

    def show_compare(self) -> CompareDialog:
        if self.compare_dialog is None:
            panel = self.window.init_panel
            self.compare_dialog = CompareDialog(self.window.state, lambda: panel_scheme(panel), self.window)
        self.compare_dialog.show()
        self.compare_dialog.raise_()
        return self.compare_dialog

    def close(self) -> None:
        """Stop a comparison still running (it works on a copy: nothing to put back) and close."""
        for dialog in (self.compare_dialog, self.preset_dialog):
            if dialog is not None:
                dialog.close()
        if self.compare_dialog is not None:
            self.compare_dialog.worker.cancel_and_wait()
