"""Notes under the Initialize panel's initializer: fans torch gets wrong, what lsuv needs.

- **Fans.** torch's fan-based initializers read fan_in/fan_out off the weight's shape
  (:func:`paramscope.core.model.fans.torch_fans`). For grouped and depthwise convolutions fan_out is
  ``groups`` times too large (pytorch/pytorch#23854) and a transposed convolution's weight is
  read the other way round; where the chosen initializer uses such a fan, the note gives torch's
  number and the one counted per connection (:func:`paramscope.core.model.fans.fan_note`).
- **Data-dependent initializers** (``lsuv``) run the model's forward on a sample input: the
  note says in one line when the source has no code to run or no input is given, and after
  Apply it lists the layers LSUV skipped.

The notes follow the panel's targets list (every refresh of it) and the form's fields (an edit
of ``mode`` or ``input`` refreshes the targets, so their REFUSED lines do not go stale). Two
buttons open the presets and the comparison of schemes (:mod:`paramscope.gui.app.init_tools`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.backward.sample_input import sample_input_text
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.initializers import get_initializer
from paramscope.core.init.selectors import owner_module_name
from paramscope.core.model.fans import fan_note, fans_used
from paramscope.gui.panels.init_params_form import edited_signal
from paramscope.gui.widths import wrapping

if TYPE_CHECKING:
    from paramscope.gui.panels.init_panel import InitPanel

SHOWN_NAMES = 3  # weights named in a fan note; the rest are counted
FOLLOWED = "paramscopeFollowed"  # a form field whose edits already refresh the targets


def fan_lines(panel: InitPanel) -> list[str]:
    """One line per distinct fan note of the panel's targets under its initializer."""
    session = panel.state.session
    name = panel.initializer_name
    if name == "custom" or not name:
        return []
    kwargs = panel.kwargs()
    if not fans_used(name, kwargs):
        return []
    notes: dict[str, list[str]] = {}
    for target in panel.target_names():
        shape = session.report.tensor(target).shape  # (None: a lazy parameter, no shape yet)
        if shape is None or len(shape) < 3:  # only convolutions and stacked experts have a note
            continue
        tensor = session.tensor(target)
        try:
            module = session.model.get_submodule(owner_module_name(target))
        except AttributeError:
            continue  # a tensor not owned by a module
        note = fan_note(module, tensor, name, kwargs)
        if note is not None:
            notes.setdefault(note, []).append(target)
    lines = []
    for note, names in notes.items():
        more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
        lines.append(f"Fans: {', '.join(names[:SHOWN_NAMES])}{more}: {note}. {name} uses torch's numbers.")
    return lines


def input_line(panel: InitPanel) -> str | None:
    """What a data-dependent initializer still needs (model code, an input), or what it will do."""
    name = panel.initializer_name
    try:
        initializer = get_initializer(name)
    except (ParamscopeError, KeyError):
        return None
    if not getattr(initializer, "needs_input", False):
        return None
    opened = panel.state.session.opened
    if opened.forward_unavailable is not None:
        return f"{name} needs the model's code to run a forward, and this source has none ({opened.forward_unavailable})."
    text = str(panel.kwargs().get("input") or "").strip()
    if not text:
        return f"{name} needs a sample input: type one in 'input', e.g. {sample_input_text(panel.state.session.model)}."
    return f"{name} runs {text} through the model; each weight starts orthogonal and is rescaled until its layer's output std is 1 ± tol."



class InitNotes(QWidget):
    """The notes (see the module docstring) and the Presets / Compare buttons.

    Signals:
        presetsRequested(), compareRequested(): a button was pressed.
    """

    presetsRequested = Signal()
    compareRequested = Signal()

    def __init__(self, panel: InitPanel) -> None:
        super().__init__(panel)
        self.panel = panel
        self.label = wrapping(QLabel())
        self.label.setObjectName("initNotes")
        self.label.setStyleSheet("color: #a05a00")
        self.run_notes = wrapping(QLabel())
        self.run_notes.hide()  # an empty label would still take a line
        self.presets_button = QPushButton("Presets…")
        self.presets_button.setToolTip("GPT-2, BERT, PyTorch defaults, Fixup, muP, LSUV: rules to read, edit and apply")
        self.compare_button = QPushButton("Compare on the signal…")
        self.compare_button.setToolTip("Activation and gradient std per layer under several schemes, same input")
        self.presets_button.clicked.connect(self.presetsRequested)
        self.compare_button.clicked.connect(self.compareRequested)
        row = QHBoxLayout()
        row.addWidget(self.presets_button)
        row.addWidget(self.compare_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.run_notes)
        layout.addLayout(row)
        self._timer = QTimer(self)  # many rows inserted in one refresh: one update after them
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.update_notes)
        model = panel.targets_list.model()
        model.modelReset.connect(self._timer.start)
        model.rowsInserted.connect(self._timer.start)
        panel.applied.connect(self._show_run_notes)
        panel.state.sessionChanged.connect(self.run_notes.clear)
        self.update_notes()

    def update_notes(self) -> None:
        """Recompute the notes for the panel's targets and form as they are now."""
        self._follow_form_edits()
        lines: list[str] = []
        if self.panel.state.has_session:
            try:
                needs = input_line(self.panel)
                lines = ([needs] if needs else []) + fan_lines(self.panel)
            except ParamscopeError:  # a bad rule: the targets list says so already
                lines = []
        self.label.setText("\n".join(lines))
        self.label.setVisible(bool(lines))

    def _follow_form_edits(self) -> None:
        """Refresh the targets when a form field changes (the panel rebuilds its fields)."""
        for widget in self.panel.fields.values():
            signal = edited_signal(widget)
            if not widget.property(FOLLOWED):
                widget.setProperty(FOLLOWED, True)
                signal.connect(self.panel.refresh_targets)

    def _show_run_notes(self, _touched: tuple) -> None:
        """After Apply: what the initializer said while running (LSUV's skipped layers)."""
        history = self.panel.state.session.stack.history
        plan = getattr(history[-1], "rule_plan", None) if history else None
        notes = list(getattr(plan, "run_notes", []) or [])
        self.run_notes.setText("\n".join(notes))
        self.run_notes.setVisible(bool(notes))
