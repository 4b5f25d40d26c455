"""Presets in the window: pick a named recipe, read and edit its rules, see what they touch, apply.

A preset (:mod:`paramscope.core.init.presets`: GPT-2, BERT, PyTorch defaults, Fixup, muP, LSUV)
becomes a rules file for *this* model — ``#`` comments naming the paper or code, then one
``SELECTOR=INIT(...)`` per line — in an editor the user may change before applying. The list
under it is :func:`paramscope.core.init.rules.plan` of the rules as they stand: every tensor each rule
hits, refusals, tied aliases and fan notes, before anything is written. Apply runs the rules with
one seed as one :class:`~paramscope.core.edit.command_group.CommandGroup`: one Undo takes the whole
preset back, and the replay script repeats it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.backward.sample_input import sample_input_text
from paramscope.core.edit.command_group import CommandGroup
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.initializer_base import REQUIRED
from paramscope.core.init.presets import PRESETS, Preset
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rule_plans import Plan
from paramscope.core.init.rules import build_commands
from paramscope.gui.panels.init_work import BACKGROUND_NUMEL, BACKGROUND_TENSORS, in_background
from paramscope.gui.panels.preset_plan import PresetView, editor_rules, preset_view
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker

REFRESH_MS = 250  # the target list follows the editor after a pause in typing


def arguments_hint(preset: Preset) -> str:
    """``std=0.02, n_layers=0, ...``: the arguments and their defaults (required ones empty)."""
    parts = [f"{p.name}=" + ("…" if p.default is REQUIRED else str(p.default)) for p in preset.params]
    return ", ".join(parts) if parts else "(no arguments)"


class PresetDialog(QDialog):
    """Pick, inspect, edit and apply a preset (see the module docstring).

    Signals:
        applied(tuple): canonical names the preset changed.
        failed(str): a one-line message (also shown in the dialog).
    """

    applied = Signal(tuple)
    failed = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Initialization presets")
        self.state = state
        self._made = ""  # the rules text the preset gave (to tell an edited one)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh_targets)
        self._build()
        self.resize(760, 640)
        self.preset_combo.currentIndexChanged.connect(lambda _i: self._on_preset())
        self.args_edit.editingFinished.connect(self.make_rules)
        self.rules_edit.textChanged.connect(self._timer.start)
        self.input_edit.textChanged.connect(self._timer.start)
        self.apply_button.clicked.connect(self.apply)
        self.reset_button.clicked.connect(self.make_rules)
        self.worker = TaskWorker(self)  # applies a large preset (see apply)
        self.worker.finished.connect(lambda job: self._record(*job))
        self.worker.failed.connect(self._failed_in_worker)
        self.planner = TaskWorker(self)  # lists what the rules touch, for a model of many tensors
        self.planner.finished.connect(lambda shown: self._show(*shown))
        self.planner.failed.connect(lambda message: self._show(None, PresetView(error=message)))
        state.sessionChanged.connect(self._on_session)
        self._on_session()

    def _build(self) -> None:
        self.preset_combo = QComboBox()
        for name, preset in PRESETS.items():
            self.preset_combo.addItem(f"{name} — {preset.title}", name)
        self.source_label = QLabel()
        self.source_label.setWordWrap(True)
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.args_edit = QLineEdit()
        self.args_edit.setToolTip("key=value, ... (Enter remakes the rules)")
        self.rules_edit = QPlainTextEdit()
        self.rules_edit.setToolTip("One rule per line, SELECTOR=INIT(key=value,...); # starts a comment")
        self.rules_edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)  # one rule, one line
        self.input_edit = QLineEdit()
        self.input_edit.setToolTip("The sample input of data-dependent rules (lsuv) that name none")
        self.seed_edit = QLineEdit()
        self.seed_edit.setPlaceholderText("random (shown after use)")
        self.skip_refused = QCheckBox("Skip tensors a rule cannot apply to (as the command line does)")
        self.skip_refused.setChecked(True)
        self.targets_list = QListWidget()
        self.targets_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.reset_button = QPushButton("Remake rules from the preset")
        self.apply_button = QPushButton("Apply")
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        form = QFormLayout()
        form.addRow("Preset", self.preset_combo)
        form.addRow("Source", self.source_label)
        form.addRow("Arguments", self.args_edit)
        form.addRow("Input", self.input_edit)
        form.addRow("Seed", self.seed_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset_button)
        buttons.addStretch(1)
        buttons.addWidget(self.apply_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Rules (edit before applying):"))
        layout.addWidget(self.rules_edit, 2)
        layout.addWidget(self.skip_refused)
        layout.addWidget(QLabel("Tensors they would touch:"))
        layout.addWidget(self.targets_list, 2)
        layout.addWidget(self.message)
        layout.addLayout(buttons)

    # --- making the rules ----------------------------------------------------------------------
    @property
    def preset(self) -> Preset:
        return PRESETS[self.preset_combo.currentData()]

    def choose(self, name: str, arguments: str = "") -> None:
        """Pick preset ``name`` with ``arguments`` (``base_width=32``) and make its rules."""
        self.preset_combo.setCurrentIndex(self.preset_combo.findData(name))
        self.args_edit.setText(arguments)
        self.make_rules()

    def preset_text(self) -> str:
        arguments = self.args_edit.text().strip()
        return f"{self.preset.name}({arguments})" if arguments else self.preset.name

    def _on_preset(self) -> None:
        preset = self.preset
        self.source_label.setText(f"{preset.source}" + (f"\n{preset.description}" if preset.description else ""))
        self.args_edit.clear()
        self.args_edit.setPlaceholderText(arguments_hint(preset))
        self.make_rules()

    def _on_session(self) -> None:
        self.worker.cancel()  # a preset still applying to the previous model: not recorded here
        self.planner.cancel()
        has = self.state.has_session
        self.apply_button.setEnabled(has)
        if has and self.state.session.opened.forward_unavailable is None:
            self.input_edit.setText(sample_input_text(self.state.session.model))
        self._on_preset()

    def make_rules(self) -> None:
        """Put the preset's rules for this model in the editor (replacing edits), and list what
        they touch."""
        if not self.state.has_session:
            return
        self._plan(self.preset_text())

    def refresh_targets(self) -> None:
        """List what the editor's rules would touch (nothing is applied)."""
        self._timer.stop()
        if not self.state.has_session or not self.rules_edit.toPlainText().strip():
            self.planner.cancel()
            self.targets_list.clear()
            return
        self._plan(None)

    def _plan(self, preset: str | None) -> None:
        """:func:`preset_view` at once for a small model, else in the planner worker."""
        session, text, sample = self.state.session, self.rules_edit.toPlainText(), self._sample_input()
        if len(session.report.order) <= BACKGROUND_TENSORS:
            self.planner.cancel()
            self._show(preset, preset_view(session, preset, text, sample))
            return
        self.targets_list.clear()
        self.apply_button.setEnabled(False)  # until the editor holds the preset's rules
        self._say(f"{preset or 'the rules'}: finding the tensors they touch…")
        self.planner.start(lambda st: (preset, preset_view(session, preset, text, sample, st)), "planning the preset")

    def _show(self, preset: str | None, view: PresetView) -> None:
        self.apply_button.setEnabled(self.state.has_session and not self.worker.is_running)
        if preset is not None:  # the preset's rules replace the editor's
            self._made = view.made or ""
            self.rules_edit.blockSignals(True)  # (no second plan of the same text)
            self.rules_edit.setPlainText(self._made)
            self.rules_edit.blockSignals(False)
        self.targets_list.clear()
        if view.error is not None:
            self._say(view.error, error=True)
            return
        self.targets_list.addItems(view.lines)
        for row in range(self.targets_list.count()):
            item = self.targets_list.item(row)
            item.setToolTip(item.text())
        also = f" ({view.refused} refused)" if view.refused else ""
        edited = " (edited)" if self.edited else ""
        self._say(f"{self.preset_text()}{edited}: would change {view.changed} tensor(s){also}; "
                  "nothing is applied until Apply")  # fmt: skip

    @property
    def edited(self) -> bool:
        return self.rules_edit.toPlainText() != self._made

    def _sample_input(self) -> str | None:
        return self.input_edit.text().strip() or None

    def rules(self) -> list[InitRule]:
        """The editor's rules, with the input filled into data-dependent ones that name none."""
        return editor_rules(self.rules_edit.toPlainText(), self._sample_input())

    # --- applying ------------------------------------------------------------------------------
    def _seed(self) -> int | None:
        text = self.seed_edit.text().strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise ParamscopeError(f"seed {text!r}: must be a whole number") from None

    def apply(self) -> bool:
        """Apply the editor's rules as one undoable step (one seed for all of them)."""
        if not self.state.has_session or self.state.refuse_if_busy("preset"):
            return False
        session = self.state.session
        try:
            rules, seed = self.rules(), self._seed()
            with self.state.warnings_as_notices("preset"):
                the_plan, commands = build_commands(session, rules, seed, self.skip_refused.isChecked())
            if not commands:
                raise ParamscopeError("nothing to initialize: no rule hits a tensor that can take it")
        except ParamscopeError as exc:
            self._say(str(exc), error=True)
            return False
        used_seed = commands[0].seed
        source = f"rules edited from preset {self.preset_text()}" if self.edited else f"preset {self.preset_text()}"
        group = CommandGroup(f"{source} ({len(commands)} rule(s), seed {used_seed})", commands)
        if any(in_background(c) for c in commands) or sum(c.work for c in commands) > BACKGROUND_NUMEL:
            # a GPT-2 preset on a 0.5B model froze the window for 4 s, lsuv runs the model's forward:
            # done in the worker on the model, busy meanwhile; recorded on this thread (do again: a no-op)
            self.state.set_busy(True, "preset")
            self.apply_button.setEnabled(False)
            self.message.setText(f"{group.text}: applying…")
            def work(_state: object) -> tuple[CommandGroup, Plan, list]:
                group.do()  # on failure it undoes what it did: the model is as it was
                return group, the_plan, commands

            self.worker.start(work, group.text)
            return True
        return self._record(group, the_plan, commands)

    def _failed_in_worker(self, message: str) -> None:
        """The group undid what it had done (``CommandGroup.do``): the model is as it was."""
        self.state.set_busy(False, "preset")
        self.apply_button.setEnabled(True)
        self._say(message, error=True)

    def _record(self, group: CommandGroup, the_plan: Plan, commands: list) -> bool:
        """Put the applied group on the undo stack and say what it did."""
        if self.state.model_busy == "preset":
            self.state.set_busy(False, "preset")
            self.apply_button.setEnabled(True)
        if not self.state.execute(group):
            self._say(f"{group.text}: not applied", error=True)
            return False
        notes = [n for c in commands for n in c.rule_plan.run_notes]
        skipped = f"; skipped {len(the_plan.skipped)} refused tensor(s)" if the_plan.skipped else ""
        self._say(f"{group.text}: changed {len(group.touched)} tensor(s){skipped}. One Undo takes it back."
                  + "".join(f"\n{n}" for n in notes))  # fmt: skip
        self.applied.emit(group.touched)
        return True

    def _say(self, text: str, *, error: bool = False) -> None:
        if error:
            text = " ".join(text.split())
            self.message.setText(f"<span style='color:#aa0000'>{_escape(text)}</span>")
            self.failed.emit(text)
        else:
            self.message.setText(_escape(text).replace("\n", "<br>"))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
