"""The Initialize panel: pick targets and an initializer, preview, apply, edit values.

The request lives in Qt-free core state objects: :class:`~paramscope.core.state.init_state.InitState`
(targets, initializer, arguments, seed) and :class:`~paramscope.core.state.init_state.ValueEditState`;
the boxes of this panel only bind widgets to them (``init_targets``, ``init_boxes``,
``init_params_form``). Every change is a command through ``AppState.execute`` (undoable).

Preview runs the same request on copies (:func:`~paramscope.gui.panels.init_work.compute_preview`), in
a worker while the model is marked busy, so with the same seed it shows exactly what Apply will
write. A preview whose request or model changed while it was computed is dropped, not shown.

A large edit (costing over :data:`BACKGROUND_NUMEL` elements) is computed in a
:class:`~paramscope.gui.workers.TaskWorker` (``TensorEditCommand.stage``; one that cannot be
staged, or runs the model's forward, on the model itself) while the model is marked busy; one
of thousands of tensors, or of values still in a lazily opened model's files, is also planned
and built there (``builds_in_background``).
Back on the GUI thread the command goes through ``AppState.execute`` as any other, which then
only swaps the new tensors in. The undo stack is only ever touched on the GUI thread.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.edit.commands import Command, TensorEditCommand
from paramscope.core.errors import ParamscopeError, listed
from paramscope.core.init.rule_plans import Plan
from paramscope.core.init.rules import InitRule, build_commands, make_generator
from paramscope.core.model.tensor_stats import Histogram
from paramscope.core.state.init_state import (
    CUSTOM,
    RULE,
    SELECTED_MODULE,
    SELECTED_TENSOR,
    InitState,
    ValueEditState,
)
from paramscope.gui.bind import on_change
from paramscope.gui.panels.init_boxes import InitializerBox, ValueEditBox
from paramscope.gui.panels.init_footer import ReplayFooter
from paramscope.gui.panels.init_notes import InitNotes
from paramscope.gui.panels.init_params_form import example_source, show_value
from paramscope.gui.panels.init_targets import TargetsBox
from paramscope.gui.panels.init_work import (
    BACKGROUND_NUMEL,
    Builder,
    Built,
    Finish,
    Form,
    Pending,
    Previewed,
    Staged,
    build_in_worker,
    builds_in_background,
    compute_preview,
    in_background,
    init_builder,
    stage_in_worker,
    theory_curve,
    worker_job,
)
from paramscope.gui.plots.histogram_view import Theory
from paramscope.gui.state import AppState
from paramscope.gui.widths import guard_wheel, wrapping
from paramscope.gui.workers import TaskWorker

__all__ = [
    "BACKGROUND_NUMEL", "CUSTOM", "RULE", "SELECTED_MODULE", "SELECTED_TENSOR", "InitPanel",
    "compute_preview", "example_source", "stage_in_worker", "theory_curve",
]  # fmt: skip



class InitPanel(QWidget):
    """Initialize parameters and edit values, undoably.

    ``init_state`` and ``edit_state`` hold what is asked; the widgets below are bound to them.

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
        self.init_state = InitState()
        self.edit_state = ValueEditState()
        self.worker = TaskWorker(self)  # computes large edits (see BACKGROUND_NUMEL)
        self.preview_worker = TaskWorker(self)  # computes previews
        self._preview_key: tuple | None = None  # the request of the preview being computed
        self._pending: Pending | None = None
        self.inline_error: str | None = None
        self._build()
        self._wire()
        self.refresh_targets()
        guard_wheel(self)

    def _build(self) -> None:
        targets = self.targets_box = TargetsBox(self.init_state)
        box = self.initializer_box = InitializerBox(self.init_state)
        edits = self.edits_box = ValueEditBox(self.edit_state)
        # The widgets by the names the window, its menus and the tests use.
        self.target_mode, self.rule_edit, self.targets_list = targets.target_mode, targets.rule_edit, targets.targets_list
        self.weights_box, self.biases_box = targets.weights_box, targets.biases_box
        self.initializer_combo, self.form_box, self.custom_box = box.initializer_combo, box.form, box.custom
        self.custom_editor, self.custom_function = box.custom.editor, box.custom.function
        self.custom_warning, self.load_button, self.highlighter = box.custom.warning, box.custom.load_button, box.custom.highlighter
        self.seed_edit, self.skip_refused, self.theory_label = box.seed_edit, box.skip_refused, box.theory_label
        self.preview_button, self.apply_button = box.preview_button, box.apply_button
        self.edit_kind, self.edit_value, self.expression_edit = edits.edit_kind, edits.edit_value, edits.expression_edit
        self.clamp_low, self.clamp_high, self.edit_button = edits.clamp_low, edits.clamp_high, edits.edit_button
        self.message = wrapping(QLabel())
        self.footer = ReplayFooter(self.state, self._error)
        self.undo_label, self.script_button = self.footer.undo_label, self.footer.script_button
        self.notes = InitNotes(self)  # fan warnings, what lsuv needs; Presets… and Compare… buttons
        box.layout().addWidget(self.notes)  # under the theory line

        content = QWidget()
        layout = QVBoxLayout(content)
        for group in (targets, box, edits):  # their natural height; slack goes below them
            group.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
            layout.addWidget(group)
        layout.addWidget(self.message)
        layout.addWidget(self.footer)
        layout.addStretch(1)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def _wire(self) -> None:
        for name in ("target_mode", "rule_text", "weights", "biases", "initializer"):
            on_change(self, self.init_state, name, lambda _value: self.refresh_targets())
        self.load_button.clicked.connect(self.load_file_dialog)
        self.preview_button.clicked.connect(self.preview)
        self.apply_button.clicked.connect(self.apply)
        self.edit_button.clicked.connect(self.apply_value_edit)
        self.worker.progress.connect(self._on_stage_progress)
        self.worker.finished.connect(self._on_staged)
        self.worker.failed.connect(self._on_stage_failed)
        self.worker.done.connect(self._on_stage_done)
        self.preview_worker.finished.connect(self._show_preview)
        self.preview_worker.failed.connect(lambda message: self._error(" ".join(message.split())))
        self.preview_worker.done.connect(self._on_preview_done)
        self.state.sessionChanged.connect(self._on_session)
        self.state.moduleSelected.connect(lambda _module: self._refresh_for_selection())
        self.state.tensorSelected.connect(lambda _tensor: self._refresh_for_selection())

    def _on_session(self) -> None:
        self.worker.cancel()  # values of the previous model: dropped
        self.preview_worker.cancel()
        self.message.clear()  # no stale message from the previous model
        self.theory_label.clear()
        self.refresh_targets()

    # --- form ----------------------------------------------------------------------------------
    @property
    def initializer_name(self) -> str:
        return self.init_state.initializer

    def set_initializer(self, name: str) -> None:
        self.init_state.initializer = name

    @property
    def fields(self) -> dict[str, QWidget]:
        """The argument widgets of the current initializer, by argument name."""
        return self.form_box.fields

    def set_field(self, name: str, value: object) -> None:
        """Type ``value`` into the argument's widget (a spin box rounds it as it shows it)."""
        show_value(self.fields[name], value)

    def kwargs(self) -> dict[str, object]:
        return self.init_state.kwargs()

    def load_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load an initializer", "", "Python files (*.py)")
        if path:
            self.load_file(Path(path))

    def load_file(self, path: Path) -> None:
        """Put a Python file's text into the editor (it runs when previewed or applied)."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self._error(f"{path}: cannot read: {exc}")
            return
        self.init_state.custom_source = text
        self.init_state.custom_function = ""
        self.set_initializer(CUSTOM)

    # --- targets -------------------------------------------------------------------------------
    def target_names(self) -> list[str]:
        """Canonical names the request hits (raises ParamscopeError for a bad rule)."""
        if not self.state.has_session:
            return []
        return self.init_state.target_names(self.state.session)

    def current_rule(self) -> InitRule:
        return self.init_state.rule(self.state.session)

    def _refresh_for_selection(self) -> None:
        if self.init_state.target_mode != RULE:  # a rule's targets do not follow the selection
            self.refresh_targets()

    def refresh_targets(self) -> None:
        lines = self.init_state.plan_lines(self.state.session) if self.state.has_session else []
        self.targets_box.show_lines(lines, self.init_state.target_mode == RULE)

    # --- preview -------------------------------------------------------------------------------
    def _error(self, message: str) -> None:
        self.message.setText(message)
        self.inline_error = message  # the window shows it here only, not again in a dialog
        self.state.errorOccurred.emit(message)

    def _request_key(self) -> tuple:
        """What a preview depends on: the request, the selection and the model's values."""
        session = self.state.session if self.state.has_session else None
        if session is None:
            return (self.init_state.request_key(),)
        where = (id(session), session.generation, session.selected_module, session.selected_tensor)
        return (self.init_state.request_key(), *where)

    def preview(self) -> bool:
        """Compute in the worker what Apply would write; ``previewReady`` shows it in the main
        histogram. The model is not touched (and is busy meanwhile). True: started."""
        if not self.state.has_session or self.state.refuse_if_busy("preview"):
            return False
        session = self.state.session
        try:
            rule = self.current_rule()
            if not rule.selector.names:
                raise ParamscopeError("nothing to initialize: select a tensor or write a rule")
            seed = self.init_state.seed(rule.text)
        except ParamscopeError as exc:
            self._error(str(exc))
            return False
        seed = make_generator(None)[1] if seed is None else seed
        skip, selected = self.init_state.skip_refused, session.selected_tensor
        self._preview_key = self._request_key()
        self._set_staging(True, "preview")
        what = f"preview of {_count(len(rule.selector.names))}"  # a rule's text can list every name
        self.message.setText(f"{what}: computing…")
        self.preview_worker.start(
            lambda task_state: compute_preview(session, rule, seed, skip, selected, task_state),
            what,
        )
        return True

    def _show_preview(self, previewed: Previewed) -> None:
        """Tell the main histogram (``previewReady``) what the preview would write, unless the
        request or the model changed since it started (then it is dropped)."""
        asked = self._preview_key
        self._on_preview_done()
        if not self.state.has_session:
            return
        if asked != self._request_key():
            self.message.setText("preview dropped: the request changed while it was computed")
            return
        for text in previewed.notices:
            self.state.noticeOccurred.emit(f"preview {previewed.key}: {text}")
        name = previewed.name
        if previewed.before is not None:
            self.state.store_summaries({name: previewed.before})
        self.init_state.remember_preview(previewed.key, previewed.seed)
        theory = self._theory(name, previewed.after)
        self.theory_label.setText(theory[2] if theory else "")
        self.message.setText(
            f"Preview of {name} (seed {previewed.seed}) in the Histogram tab; the model is unchanged. "
            "Apply writes exactly this."
        )
        self.previewReady.emit(name, previewed.after, theory)
        self.theoryChanged.emit(theory)

    def _on_preview_done(self) -> None:
        if self._preview_key is not None:
            self._preview_key = None
            self._set_staging(False, "preview")

    def _shown_name(self, names: list[str]) -> str:
        selected = self.state.selected_tensor
        return selected if selected in names else names[0]

    def _form(self) -> Form:
        return self.init_state.initializer, self.init_state.kwargs()

    def _theory(self, name: str, histogram: Histogram, form: Form | None = None) -> Theory | None:
        initializer, kwargs = form if form is not None else self._form()
        if initializer == CUSTOM:
            return None
        shape = self.state.session.report.tensor(name).shape
        try:
            return theory_curve(initializer, kwargs, shape, histogram)
        except (ValueError, ZeroDivisionError):
            return None

    # --- apply ---------------------------------------------------------------------------------
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
            seed = self.init_state.seed(rule.text)
            if builds_in_background(session, list(rule.selector.names)):  # (resolved: of_names)
                build = init_builder(session, rule, seed, self.init_state.skip_refused)
                return self._build_in_background(build, f"init {rule.label}", "init", self._applied)
            the_plan, commands = build_commands(session, [rule], seed, self.init_state.skip_refused)
        except ParamscopeError as exc:
            self._error(str(exc))
            return False
        if not commands:
            self._error("nothing to initialize: every target was refused")
            return False
        return self._run(commands[0], "init", self._applied, the_plan)

    def _applied(self, command: Command, the_plan: Plan | None) -> None:
        """The rest of Apply once the init is in effect: say what changed."""
        self.init_state.forget_preview()
        touched = tuple(command.touched)
        skipped = [n for _, n, _ in the_plan.skipped] if the_plan is not None else []
        changed = f"changed {listed(touched)}" + (f"; skipped {listed(skipped)}" if skipped else "")
        self.message.setText(f"{command.text}: {changed}. Undo takes it back.")
        self.applied.emit(touched)

    def _build_in_background(self, build: Builder, text: str, what: str, finish: Finish) -> bool:
        """An edit of many tensors: built and staged in the worker (True: started)."""
        if self.state.refuse_if_busy(text):
            return False
        session, selected = self.state.session, self.state.selected_tensor
        self._pending = Pending(None, what, None, self._form(), finish, text)
        self._set_staging(True, what)
        self.message.setText(f"{text}: computing the new values…")
        self.worker.start(lambda task_state: build_in_worker(session, build, selected, task_state), text)
        return True

    def apply_value_edit(self) -> bool:
        """Add, multiply, set, clamp or an expression in x, on the targets (undoable).

        A large edit is computed in the worker first, as :meth:`apply` does.
        """
        if not self.state.has_session:
            return False

        def finish(command: Command, _plan: Plan | None) -> None:
            self.message.setText(f"{command.text}. Undo takes it back.")
            self.applied.emit(tuple(command.touched))

        try:
            names = self.target_names()
            build = self.edit_state.builder(self.state.session, names)
            if builds_in_background(self.state.session, names):
                return self._build_in_background(lambda: (None, build()), f"edit {_count(len(names))}", "value edit", finish)
            command = build()
        except ParamscopeError as exc:
            self._error(str(exc))
            return False
        return self._run(command, "value edit", finish)

    # --- running an edit, at once or in the worker -----------------------------------------------
    @property
    def is_staging(self) -> bool:
        """A large edit or a preview is being computed in a worker (the model is busy meanwhile)."""
        return self._pending is not None or self._preview_key is not None

    @property
    def is_applying(self) -> bool:
        """A large edit is being computed: its new values replace the current ones when done."""
        return self._pending is not None

    def _run(self, command: Command, what: str, finish: Finish, the_plan: Plan | None = None) -> bool:
        """Do ``command`` now, or in the worker first when it is large; then show it, ``finish``."""
        name = self._shown_name(list(command.touched))
        form = self._form()
        if not in_background(command):
            if not self.state.execute(command):
                return False
            self._show_after(name, form)
            finish(command, the_plan)
            return True
        assert isinstance(command, TensorEditCommand)
        if self.state.refuse_if_busy(command.text):
            return False
        summarize_before = self.state.session.summary(name) is None
        self._pending = Pending(command, what, name, form, lambda done, _: finish(done, the_plan), command.text)
        self._set_staging(True, what)
        self.message.setText(f"{command.text}: computing the new values…")
        self.worker.start(worker_job(command, name, summarize_before), command.text)  # (a failure names it)
        return True

    def _set_staging(self, busy: bool, what: str) -> None:
        for button in (self.apply_button, self.edit_button, self.preview_button):
            button.setEnabled(not busy)
        self.state.set_busy(busy, what)

    def _take_pending(self) -> Pending | None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._set_staging(False, pending.what)
        return pending

    def _on_stage_progress(self, fraction: float, _message: str) -> None:
        if self._pending is not None:
            text = self._pending.text
            self.message.setText(f"{text}: computing the new values… {int(fraction * 100)}%")

    def _on_staged(self, staged: Staged | Built) -> None:
        pending = self._take_pending()  # not busy any more: execute would refuse
        if pending is None or not self.state.has_session:
            return
        the_plan = None
        if isinstance(staged, Built):  # the worker built the command too
            built, staged, the_plan = staged, staged.staged, staged.plan
            pending = replace(pending, command=built.command, name=built.name)
            if staged is None:  # not stageable (a reset or a user's function): it runs here
                self._run(built.command, pending.what, pending.finish, the_plan)
                return
        command, name = pending.command, pending.name
        assert command is not None and name is not None
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
        pending.finish(command, the_plan)

    def _on_stage_failed(self, message: str) -> None:
        # Staging touched no live tensor: the model is as it was. One line, whatever the exception.
        if self._take_pending() is not None:
            self._error(" ".join(message.split()))

    def _on_stage_done(self) -> None:
        pending = self._take_pending()  # still pending after done: cancelled (new model, closing)
        if pending is not None:
            self.message.setText(f"{pending.text}: cancelled, nothing applied")

    def _show_after(self, name: str, form: Form) -> None:
        session = self.state.session
        current = session.ensure_summary(name).histogram
        theory = self._theory(name, current, form)
        self.theory_label.setText(theory[2] if theory else "")
        self.theoryChanged.emit(theory)

    # --- replay script -------------------------------------------------------------------------
    def export_script_dialog(self) -> None:
        self.footer.export_script_dialog()

    def export_script(self, path: Path) -> bool:
        """Write the session's edits as a script that replays them on a fresh model."""
        message = self.footer.export_script(path)
        if message is not None:
            self.message.setText(message)
        return message is not None


def _count(tensors: int) -> str:
    return f"{tensors:,} tensor" + ("" if tensors == 1 else "s")
