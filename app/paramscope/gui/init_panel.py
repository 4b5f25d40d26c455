"""The Initialize panel: pick targets and an initializer, preview, apply, edit values.

Thin over the core: targets come from :func:`paramscope.core.rules.resolve_targets` (or the
selection), the form from each initializer's :class:`~paramscope.core.initializers.ParamSpec`,
and every change is a command through ``AppState.execute`` (undoable). Preview runs the same
request on copies (:func:`~paramscope.core.rules.preview_rules`), so with the same seed it shows
exactly what Apply will write.

A large edit (over :data:`BACKGROUND_NUMEL` elements) that can be staged is computed in a
:class:`~paramscope.gui.workers.TaskWorker` (``TensorEditCommand.stage``) while the model is
marked busy; back on the GUI thread the command goes through ``AppState.execute`` as any other,
which then only swaps the new tensors in. The undo stack is only ever touched on the GUI thread.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.commands import Command, TensorEditCommand
from paramscope.core.errors import ParamscopeError
from paramscope.core.initializers import (
    CATALOGUE,
    REQUIRED,
    Initializer,
    ParamSpec,
    custom_from_source,
)
from paramscope.core.model_statistics import TensorSummary, summarize
from paramscope.core.rules import (
    InitRule,
    Selector,
    build_commands,
    parse_selector,
    plan,
    preview_rules,
    resolve_targets,
)
from paramscope.core.session import Session
from paramscope.core.tasks import TaskState
from paramscope.core.tensor_stats import Histogram
from paramscope.core.theory import theory_for
from paramscope.core.value_edits import EDIT_KINDS, value_edit_command
from paramscope.gui.histogram_view import Theory
from paramscope.gui.init_notes import InitNotes
from paramscope.gui.python_highlighter import PythonHighlighter
from paramscope.gui.state import AppState
from paramscope.gui.widths import guard_wheel, narrow_combo, shrinkable_spin, wrapping
from paramscope.gui.workers import SliceState, TaskWorker
from paramscope.resources import resource_path

SELECTED_TENSOR, SELECTED_MODULE, RULE = "tensor", "module", "rule"
CUSTOM = "custom"

#: Edits of more elements than this are computed in a worker: a GPT-2 ``*.weight`` init froze the
#: window for about a second. Smaller ones run at once (no thread to wait for).
BACKGROUND_NUMEL = 1 << 22

#: The initializer and its arguments at the time of Apply (for the theory curve drawn after).
Form = tuple[str, dict[str, object]]


@dataclass(frozen=True)
class Staged:
    """What the worker hands back: torch's warnings, and summaries of the tensor shown after."""

    notices: list[str]
    after: TensorSummary
    before: TensorSummary | None  # None: the session already knew it


@dataclass(frozen=True)
class _Pending:
    command: TensorEditCommand
    what: str  # the busy name: "init" or "value edit"
    name: str  # the tensor shown after
    form: Form
    finish: Callable[[], None]  # the rest of Apply, once the command is in effect


def stage_in_worker(
    command: TensorEditCommand, name: str, summarize_before: bool, state: TaskState
) -> Staged:
    """Compute ``command``'s new values and the summaries shown after it (runs in a worker).

    The summaries are made here too: a histogram of a GPT-2 embedding takes as long as its init.
    """
    # Warnings come from this thread: caught here and passed on as notices, as execute does.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        command.stage(SliceState(state, 0.0, 0.7))
        after_values = command.values(name, after=True)
        before_values = command.values(name, after=False)
        assert after_values is not None and before_values is not None
        after = summarize(after_values, state=SliceState(state, 0.7, 0.85))
        before = None
        if summarize_before:
            before = summarize(before_values, state=SliceState(state, 0.85, 1.0))
    notices = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    return Staged(notices, after, before)


@dataclass(frozen=True)
class Previewed:
    """A preview, computed on copies (in the worker when large): what the main histogram draws."""

    key: str  # the rule's text: Apply with the same rule writes exactly this
    seed: int
    name: str  # the tensor shown (the selected one when it is a target)
    after: Histogram
    before: TensorSummary | None  # None: the session already had the current values' summary
    notices: list[str]


def compute_preview(
    session: Session, rule: InitRule, seed: int, skip_refused: bool, selected: str | None, state: TaskState | None = None
) -> Previewed:
    """Run ``rule`` on copies and summarize the tensor shown; the model is not touched.

    Plain Python on the session's tensors, so it runs in a worker as well as at once.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        the_plan, tensors = preview_rules(session, [rule], seed, skip_refused)
        touched = list(the_plan.touched)
        name = selected if selected in touched else touched[0]
        after = summarize(tensors[name], state=state).histogram
        before = None
        if session.summary(name) is None:
            before = summarize(session.tensor(name).detach(), state=state)
    notices = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    return Previewed(rule.text, seed, name, after, before, notices)


def example_source() -> str:
    """The tutorial's bimodal init_weight_, shipped as an example."""
    return resource_path("examples/init_weight.py").read_text(encoding="utf-8")


def theory_curve(initializer: str, kwargs: dict, shape: tuple[int, ...] | None, histogram: Histogram) -> Theory | None:
    """``(x, pdf, label)`` for the histogram view, or None if there is no simple density."""
    theory = theory_for(initializer, kwargs, shape)
    if theory is None or len(histogram.edges) < 2:
        return None
    x, _ = theory.curve(np.asarray(histogram.edges), 1)
    return x, theory.pdf(x), theory.text


def _spin_for(spec: ParamSpec) -> QWidget:
    default = None if spec.default is REQUIRED else spec.default
    if spec.kind == "choice":
        box = narrow_combo(QComboBox())
        box.addItems(list(spec.choices))
        if default is not None:
            box.setCurrentText(str(default))
        return box
    if spec.kind == "bool":
        check = QCheckBox()
        check.setChecked(bool(default))
        return check
    if spec.kind == "int":
        spin = QSpinBox()
        spin.setRange(-(2**31), 2**31 - 1)
        spin.setValue(int(default or 0))
        return shrinkable_spin(spin)
    if spec.kind == "float":
        spin = QDoubleSpinBox()
        spin.setDecimals(6)
        spin.setRange(-1e9, 1e9)
        spin.setSingleStep(0.01)
        spin.setValue(float(default or 0.0))
        return shrinkable_spin(spin)
    line = QLineEdit(str(default or ""))
    return line


def _value_of(widget: QWidget) -> object:
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QSpinBox | QDoubleSpinBox):
        return widget.value()
    assert isinstance(widget, QLineEdit)
    return widget.text()


class InitPanel(QWidget):
    """Initialize parameters and edit values, undoably.

    Signals:
        previewReady(str, object, object): tensor name, would-be :class:`Histogram`, theory
            ``(x, pdf, label)`` or None, after Preview.
        theoryChanged(object): the theory of the last preview/apply (for the main histogram).
        applied(tuple): canonical names changed by the last Apply.
    """

    previewReady = Signal(str, object, object)
    theoryChanged = Signal(object)
    applied = Signal(tuple)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.fields: dict[str, QWidget] = {}
        self._preview_seed: tuple[str, int] | None = None  # (request key, seed) of the last preview
        self._custom_cache: tuple[str, Initializer] | None = None
        self.worker = TaskWorker(self)  # computes large edits (see BACKGROUND_NUMEL)
        self.preview_worker = TaskWorker(self)  # computes large previews
        self._previewing = False  # a large preview is being computed (the model is busy meanwhile)
        self._pending: _Pending | None = None

        # --- targets
        self.target_mode = QComboBox()
        self.target_mode.addItem("Selected tensor", SELECTED_TENSOR)
        self.target_mode.addItem("Selected module (all its parameters)", SELECTED_MODULE)
        self.target_mode.addItem("Rule (glob, re:REGEX, type:Linear)", RULE)
        self.rule_edit = QLineEdit("*.weight")
        self.rule_edit.setPlaceholderText("*.weight, 0.*, re:^0\\., type:Linear")
        self.weights_box = QCheckBox("weights")
        self.biases_box = QCheckBox("biases")
        self.weights_box.setChecked(True)
        self.biases_box.setChecked(True)
        self.targets_list = QListWidget()
        self.targets_list.setMaximumHeight(110)
        self.targets_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # blocks.…3.attn.weight
        # rows as wide as the list, so long names elide instead of scrolling sideways
        self.targets_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.targets_list.setResizeMode(QListView.ResizeMode.Adjust)
        self.targets_list.setUniformItemSizes(True)  # without it a row takes its text's width
        narrow_combo(self.target_mode)
        targets = QGroupBox("Targets")
        tl = QVBoxLayout(targets)
        tl.addWidget(self.target_mode)
        tl.addWidget(self.rule_edit)
        row = QHBoxLayout()
        row.addWidget(QLabel("Include:"))
        row.addWidget(self.weights_box)
        row.addWidget(self.biases_box)
        row.addStretch(1)
        tl.addLayout(row)
        tl.addWidget(self.targets_list)

        # --- initializer
        self.initializer_combo = QComboBox()
        for name, entry in CATALOGUE.items():
            label = "default (reset_parameters())" if name == "default" else name
            self.initializer_combo.addItem(label, name)
            self.initializer_combo.setItemData(self.initializer_combo.count() - 1, entry.title, 3)  # tooltip
        self.initializer_combo.addItem("custom Python function", CUSTOM)
        narrow_combo(self.initializer_combo)
        self.form_box = QWidget()
        self.form = QFormLayout(self.form_box)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.custom_editor = QPlainTextEdit(example_source())
        self.custom_editor.setMinimumHeight(120)
        self.custom_editor.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))  # code: monospaced
        self.highlighter = PythonHighlighter(self.custom_editor.document(), self.custom_editor)
        self.custom_function = QLineEdit("init_weight_")
        self.custom_function.setPlaceholderText("function name (default: the last one defined)")
        self.load_button = QPushButton("Load file…")
        self.custom_warning = QLabel("This code runs as Python in paramscope's process: only run code you trust.")
        self.custom_warning.setWordWrap(True)
        self.custom_box = QWidget()
        cl = QVBoxLayout(self.custom_box)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(self.custom_warning)
        cl.addWidget(self.custom_editor)
        crow = QHBoxLayout()
        crow.addWidget(QLabel("Function:"))
        crow.addWidget(self.custom_function, 1)
        crow.addWidget(self.load_button)
        cl.addLayout(crow)
        self.seed_edit = QLineEdit()
        self.seed_edit.setPlaceholderText("random (shown after use)")
        self.skip_refused = QCheckBox("Skip tensors it cannot apply to")
        self.preview_button = QPushButton("Preview")
        self.apply_button = QPushButton("Apply")
        self.theory_label = QLabel()
        self.theory_label.setWordWrap(True)
        self.message = QLabel()
        self.message.setWordWrap(True)
        init_box = QGroupBox("Initializer")
        il = QVBoxLayout(init_box)
        il.addWidget(self.initializer_combo)
        il.addWidget(self.form_box)
        il.addWidget(self.custom_box)
        srow = QHBoxLayout()
        srow.addWidget(QLabel("Seed:"))
        srow.addWidget(self.seed_edit, 1)
        il.addLayout(srow)
        il.addWidget(self.skip_refused)
        brow = QHBoxLayout()
        brow.addWidget(self.preview_button)
        brow.addWidget(self.apply_button)
        il.addLayout(brow)
        il.addWidget(self.theory_label)
        self.notes = InitNotes(self)  # fan warnings, what lsuv needs; Presets… and Compare… buttons
        il.addWidget(self.notes)

        # --- value edits
        self.edit_kind = QComboBox()
        self.edit_kind.addItems(list(EDIT_KINDS))
        narrow_combo(self.edit_kind)
        self.edit_value = QDoubleSpinBox()
        self.edit_value.setDecimals(6)
        self.edit_value.setRange(-1e9, 1e9)
        self.edit_value.setValue(1.0)
        shrinkable_spin(self.edit_value)
        self.clamp_low = QDoubleSpinBox()
        self.clamp_high = QDoubleSpinBox()
        for spin, value in ((self.clamp_low, -1.0), (self.clamp_high, 1.0)):
            spin.setDecimals(6)
            spin.setRange(-1e9, 1e9)
            spin.setValue(value)
            shrinkable_spin(spin)
        self.expression_edit = QLineEdit("x * 2 + 1")
        self.edit_button = QPushButton("Apply edit")
        edits = QGroupBox("Edit values")  # a long title would set the dock's minimum width
        edits.setToolTip("Outside autograd, like param.data += 1 (undoable here)")
        el = QFormLayout(edits)
        el.addRow("Edit:", self.edit_kind)
        el.addRow("Value:", self.edit_value)
        el.addRow("Clamp from:", self.clamp_low)
        el.addRow("Clamp to:", self.clamp_high)
        el.addRow("Expression in x:", self.expression_edit)
        el.addRow(self.edit_button)

        self.undo_label = wrapping(QLabel())
        self.script_button = QPushButton("Export edits as Python script…")

        content = QWidget()
        layout = QVBoxLayout(content)
        for box in (targets, init_box, edits):  # their natural height; slack goes below them
            box.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout.addWidget(targets)
        layout.addWidget(init_box)
        layout.addWidget(edits)
        layout.addWidget(self.message)
        footer = QHBoxLayout()
        footer.addWidget(self.undo_label, 1)
        footer.addWidget(self.script_button)
        layout.addLayout(footer)
        layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        self.target_mode.currentIndexChanged.connect(lambda _i: self.refresh_targets())
        self.rule_edit.textChanged.connect(lambda _t: self.refresh_targets())
        self.weights_box.toggled.connect(lambda _b: self.refresh_targets())
        self.biases_box.toggled.connect(lambda _b: self.refresh_targets())
        self.initializer_combo.currentIndexChanged.connect(lambda _i: self._rebuild_form())
        self.load_button.clicked.connect(self.load_file_dialog)
        self.preview_button.clicked.connect(self.preview)
        self.apply_button.clicked.connect(self.apply)
        self.edit_button.clicked.connect(self.apply_value_edit)
        self.edit_kind.currentIndexChanged.connect(lambda _i: self._update_edit_fields())
        self.worker.progress.connect(self._on_stage_progress)
        self.worker.finished.connect(self._on_staged)
        self.worker.failed.connect(self._on_stage_failed)
        self.worker.done.connect(self._on_stage_done)
        state.sessionChanged.connect(self.worker.cancel)  # values of the previous model: dropped
        state.sessionChanged.connect(self.refresh_targets)
        state.sessionChanged.connect(self.preview_worker.cancel)
        self.preview_worker.finished.connect(self._show_preview)
        self.preview_worker.failed.connect(lambda message: self._error(" ".join(message.split())))
        self.preview_worker.done.connect(self._on_preview_done)
        state.sessionChanged.connect(self.message.clear)  # no stale message from the previous model
        state.sessionChanged.connect(self.theory_label.clear)
        state.sessionChanged.connect(self._update_undo_label)
        state.tensorsChanged.connect(lambda _n: self._update_undo_label())
        self.script_button.clicked.connect(self.export_script_dialog)
        state.moduleSelected.connect(lambda _m: self.refresh_targets())
        state.tensorSelected.connect(lambda _t: self.refresh_targets())
        self.initializer_combo.setCurrentIndex(self.initializer_combo.findData("normal_"))
        self._rebuild_form()
        self._update_edit_fields()
        self.refresh_targets()
        self._update_undo_label()
        guard_wheel(self)

    # --- form ----------------------------------------------------------------------------------
    @property
    def initializer_name(self) -> str:
        return self.initializer_combo.currentData()

    def set_initializer(self, name: str) -> None:
        self.initializer_combo.setCurrentIndex(self.initializer_combo.findData(name))

    def _rebuild_form(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.fields.clear()
        custom = self.initializer_name == CUSTOM
        self.custom_box.setVisible(custom)
        if custom:
            return
        for spec in CATALOGUE[self.initializer_name].params:
            widget = _spin_for(spec)
            self.fields[spec.name] = widget
            label = spec.name + (" (required)" if spec.required else "")
            self.form.addRow(label + ":", widget)
        guard_wheel(self.form_box)
        self.refresh_targets()

    def set_field(self, name: str, value: object) -> None:
        widget = self.fields[name]
        if isinstance(widget, QComboBox):
            widget.setCurrentText(str(value))
        elif isinstance(widget, QCheckBox):
            widget.setChecked(bool(value))
        elif isinstance(widget, QSpinBox | QDoubleSpinBox):
            widget.setValue(value)  # type: ignore[arg-type]
        else:
            widget.setText(str(value))  # type: ignore[attr-defined]

    def kwargs(self) -> dict[str, object]:
        return {name: _value_of(widget) for name, widget in self.fields.items()}

    def load_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load an initializer", "", "Python files (*.py)")
        if path:
            self.load_file(Path(path))

    def load_file(self, path: Path) -> None:
        """Put a Python file's text into the editor (it runs when previewed or applied)."""
        try:
            self.custom_editor.setPlainText(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            self._error(f"{path}: cannot read: {exc}")
            return
        self.custom_function.clear()
        self.set_initializer(CUSTOM)

    def _initializer(self) -> Initializer | str:
        if self.initializer_name != CUSTOM:
            return self.initializer_name
        key = self.custom_editor.toPlainText() + "\0" + self.custom_function.text().strip()
        if self._custom_cache is None or self._custom_cache[0] != key:
            self._custom_cache = (key, custom_from_source(self.custom_editor.toPlainText(),
                                                         self.custom_function.text().strip() or None))  # fmt: skip
        return self._custom_cache[1]

    # --- targets -------------------------------------------------------------------------------
    def target_names(self) -> list[str]:
        """Canonical names the request hits (raises ParamscopeError for a bad rule)."""
        if not self.state.has_session:
            return []
        session = self.state.session
        mode = self.target_mode.currentData()
        if mode == SELECTED_TENSOR:
            names = [self.state.selected_tensor] if self.state.selected_tensor else []
        elif mode == SELECTED_MODULE:
            module = self.state.selected_module
            names = [info.name for _, info in session.report.parameters_under(module)]
        else:
            names = resolve_targets(session.report, parse_selector(self.rule_edit.text()), session.model)
        weights, biases = self.weights_box.isChecked(), self.biases_box.isChecked()
        if weights != biases:  # one of them: the tutorial's 'weight' in name / 'bias' in name
            word = "weight" if weights else "bias"
            names = [n for n in names if any(word in a.rpartition(".")[2] for a in session.report.tensor(n).aliases)]
        elif not weights:
            names = []
        return names

    def current_rule(self) -> InitRule:
        initializer = self._initializer()
        kwargs = self.kwargs() if isinstance(initializer, str) else {}
        return InitRule.make(Selector.of_names(self.target_names()), initializer, **kwargs)

    def refresh_targets(self) -> None:
        self.targets_list.clear()
        self.rule_edit.setEnabled(self.target_mode.currentData() == RULE)
        if not self.state.has_session:
            return
        try:
            names = self.target_names()
            if not names:
                self.targets_list.addItem("(no tensors: select one, or write a rule)")
                return
            if self.initializer_name == CUSTOM:
                initializer: Initializer | str = "zeros_"  # do not run the user's code on every keystroke
            else:
                initializer = self.initializer_name
            kwargs = self.kwargs() if isinstance(initializer, str) and initializer != "zeros_" else {}
            the_plan = plan(self.state.session, [InitRule.make(Selector.of_names(names), initializer, **kwargs)])
            for line in the_plan.describe().splitlines()[1:]:
                self.targets_list.addItem(line.strip())
        except ParamscopeError as exc:
            self.targets_list.addItem(str(exc))
        except ValueError as exc:  # a form value the initializer rejects
            self.targets_list.addItem(str(exc))
        finally:
            for row in range(self.targets_list.count()):  # elided in the middle: full text on hover
                item = self.targets_list.item(row)
                item.setToolTip(item.text())

    # --- actions -------------------------------------------------------------------------------
    def _seed(self, key: str) -> int | None:
        text = self.seed_edit.text().strip()
        if text:
            try:
                return int(text)
            except ValueError:
                raise ParamscopeError(f"seed {text!r}: must be a whole number") from None
        if self._preview_seed is not None and self._preview_seed[0] == key:
            return self._preview_seed[1]  # apply exactly what was previewed
        return None

    def _error(self, message: str) -> None:
        self.message.setText(message)
        self.inline_error = message  # the window shows it here only, not again in a dialog
        self.state.errorOccurred.emit(message)

    def preview(self) -> bool:
        """Show the would-be histogram of the first target in the main histogram; the model is
        not touched. A large preview is computed in the worker (True then means started)."""
        if self.state.refuse_if_busy("preview"):
            return False
        session = self.state.session
        try:
            rule = self.current_rule()
            if not rule.selector.names:
                raise ParamscopeError("nothing to initialize: select a tensor or write a rule")
            seed = self._seed(rule.text)
            from paramscope.core.rules import make_generator

            if seed is None:
                seed = make_generator(None)[1]
            skip, selected = self.skip_refused.isChecked(), self.state.selected_tensor
            numel = sum(session.report.tensor(n).numel for n in rule.selector.names)
            if numel > BACKGROUND_NUMEL:
                self._previewing = True
                self._set_staging(True, "preview")
                self.message.setText(f"preview {rule.text}: computing…")
                self.preview_worker.start(
                    lambda task_state: compute_preview(session, rule, seed, skip, selected, task_state),
                    f"preview {rule.text}",
                )
                return True
            self._show_preview(compute_preview(session, rule, seed, skip, selected))
        except ParamscopeError as exc:
            self._error(str(exc))
            return False
        return True

    def _show_preview(self, previewed: Previewed) -> None:
        """Tell the main histogram (``previewReady``) what the preview would write."""
        self._on_preview_done()
        if not self.state.has_session:
            return
        for text in previewed.notices:
            self.state.noticeOccurred.emit(f"preview {previewed.key}: {text}")
        name = previewed.name
        if previewed.before is not None:
            self.state.store_summaries({name: previewed.before})
        self._preview_seed = (previewed.key, previewed.seed)
        theory = self._theory(name, previewed.after)
        self.theory_label.setText(theory[2] if theory else "")
        self.message.setText(
            f"Preview of {name} (seed {previewed.seed}) in the Histogram tab; the model is unchanged. "
            "Apply writes exactly this."
        )
        self.previewReady.emit(name, previewed.after, theory)
        self.theoryChanged.emit(theory)

    def _on_preview_done(self) -> None:
        if self._previewing:
            self._previewing = False
            self._set_staging(False, "preview")

    def _shown_name(self, names: list[str]) -> str:
        selected = self.state.selected_tensor
        return selected if selected in names else names[0]

    def _form(self) -> Form:
        return self.initializer_name, self.kwargs()

    def _theory(self, name: str, histogram: Histogram, form: Form | None = None) -> Theory | None:
        initializer, kwargs = form if form is not None else self._form()
        if initializer == CUSTOM:
            return None
        shape = self.state.session.report.tensor(name).shape
        try:
            return theory_curve(initializer, kwargs, shape, histogram)
        except (ValueError, ZeroDivisionError):
            return None

    def apply(self) -> bool:
        """Initialize the targets (one undoable command).

        A large one is computed in the worker first: True then means started, and ``applied``
        follows once it is in effect (or an error, the model unchanged).
        """
        session = self.state.session if self.state.has_session else None
        if session is None:
            return False
        try:
            rule = self.current_rule()
            if not rule.selector.names:
                raise ParamscopeError("nothing to initialize: select a tensor or write a rule")
            the_plan, commands = build_commands(session, [rule], self._seed(rule.text), self.skip_refused.isChecked())
        except ParamscopeError as exc:
            self._error(str(exc))
            return False
        if not commands:
            self._error("nothing to initialize: every target was refused")
            return False
        command = commands[0]
        skipped = f"; skipped {', '.join(n for _, n, _ in the_plan.skipped)}" if the_plan.skipped else ""

        def finish() -> None:
            self._preview_seed = None
            touched = tuple(command.touched)
            changed = f"changed {', '.join(touched)}{skipped}"
            self.message.setText(f"{command.text}: {changed}. Undo takes it back.")
            self.applied.emit(touched)

        return self._run(command, "init", finish)

    # --- running an edit, at once or in the worker -----------------------------------------------
    @property
    def is_staging(self) -> bool:
        """A large edit or preview is being computed in the worker (the model is busy meanwhile)."""
        return self._pending is not None or self._previewing

    def _in_background(self, command: Command) -> bool:
        if not isinstance(command, TensorEditCommand):
            return False
        return command.can_stage and command.numel > BACKGROUND_NUMEL

    def _run(self, command: Command, what: str, finish: Callable[[], None]) -> bool:
        """Do ``command`` now, or in the worker first when it is large; then show it, ``finish``."""
        name = self._shown_name(list(command.touched))
        form = self._form()
        if not self._in_background(command):
            if not self.state.execute(command):
                return False
            self._show_after(name, form)
            finish()
            return True
        assert isinstance(command, TensorEditCommand)
        if self.state.refuse_if_busy(command.text):
            return False
        summarize_before = self.state.session.summary(name) is None
        self._pending = _Pending(command, what, name, form, finish)
        self._set_staging(True, what)
        self.message.setText(f"{command.text}: computing the new values…")
        self.worker.start(
            lambda task_state: stage_in_worker(command, name, summarize_before, task_state),
            command.text,  # what a failure message names
        )
        return True

    def _set_staging(self, busy: bool, what: str) -> None:
        for button in (self.apply_button, self.edit_button, self.preview_button):
            button.setEnabled(not busy)
        self.state.busyChanged.emit(busy, what)

    def _take_pending(self) -> _Pending | None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._set_staging(False, pending.what)
        return pending

    def _on_stage_progress(self, fraction: float, _message: str) -> None:
        if self._pending is not None:
            text = self._pending.command.text
            self.message.setText(f"{text}: computing the new values… {int(fraction * 100)}%")

    def _on_staged(self, staged: Staged) -> None:
        pending = self._take_pending()  # not busy any more: execute would refuse
        if pending is None or not self.state.has_session:
            return
        command, name = pending.command, pending.name
        for text in staged.notices:
            self.state.noticeOccurred.emit(f"{command.text}: {text}")
        session = self.state.session
        if staged.before is not None and not command.stale():
            session.store_summaries({name: staged.before})  # kept as the "before" of the plot
        if not self.state.execute(command):
            self.message.setText(f"{command.text}: not applied")
            return
        self.state.store_summaries({name: staged.after})
        self._show_after(name, pending.form)
        pending.finish()

    def _on_stage_failed(self, message: str) -> None:
        # Staging touched no live tensor: the model is as it was. One line, whatever the exception.
        if self._take_pending() is not None:
            self._error(" ".join(message.split()))

    def _on_stage_done(self) -> None:
        pending = self._take_pending()  # still pending after done: cancelled (new model, closing)
        if pending is not None:
            self.message.setText(f"{pending.command.text}: cancelled, nothing applied")

    def _show_after(self, name: str, form: Form) -> None:
        session = self.state.session
        current = session.ensure_summary(name).histogram
        theory = self._theory(name, current, form)
        self.theory_label.setText(theory[2] if theory else "")
        self.theoryChanged.emit(theory)

    def _update_edit_fields(self) -> None:
        kind = self.edit_kind.currentText()
        self.edit_value.setEnabled(kind in ("add", "multiply", "set"))
        self.clamp_low.setEnabled(kind == "clamp")
        self.clamp_high.setEnabled(kind == "clamp")
        self.expression_edit.setEnabled(kind == "expression")

    def apply_value_edit(self) -> bool:
        """Add, multiply, set, clamp or an expression in x, on the targets (undoable).

        A large edit is computed in the worker first, as :meth:`apply` does.
        """
        if not self.state.has_session:
            return False
        session = self.state.session
        try:
            names = self.target_names()
            kind = self.edit_kind.currentText()
            command = value_edit_command(
                session, names, kind,
                value=self.edit_value.value() if kind in ("add", "multiply", "set") else None,
                low=self.clamp_low.value() if kind == "clamp" else None,
                high=self.clamp_high.value() if kind == "clamp" else None,
                expression=self.expression_edit.text() if kind == "expression" else None,
            )  # fmt: skip
        except ParamscopeError as exc:
            self._error(str(exc))
            return False

        def finish() -> None:
            self.message.setText(f"{command.text}. Undo takes it back.")
            self.applied.emit(tuple(command.touched))

        return self._run(command, "value edit", finish)

    # --- undo memory and replay script -----------------------------------------------------------
    def _update_undo_label(self) -> None:
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

    def export_script(self, path: Path) -> bool:
        """Write the session's edits as a script that replays them on a fresh model."""
        from paramscope.core.atomic import write_text_atomically
        from paramscope.core.replay import replay_script

        try:
            write_text_atomically(path, replay_script(self.state.session))
        except OSError as exc:
            self._error(f"{path}: cannot write the script: {exc.strerror or exc}")
            return False
        self.message.setText(f"wrote {path}: run it with python to replay these edits on a fresh model")
        return True
