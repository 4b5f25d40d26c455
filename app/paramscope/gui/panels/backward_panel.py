"""Backward panel: a sample input, a loss, Run backward / Zero grad, and every gradient.

What is asked lives in the Qt-free core :class:`~paramscope.core.state.backward_state.BackwardState`;
the form (:mod:`paramscope.gui.panels.backward_form`) binds its widgets to it. The pass runs in a
:class:`~paramscope.gui.workers.TaskWorker` (core :func:`paramscope.core.backward.backward.run`), never on
the GUI thread. The panel shows the output and loss, a gradient table (per-use parts of a tied
parameter as rows under it: the tutorial's 6 = 3 + 3), the diagnostics found after backward and
the signal-propagation plot. The gradient norms the run computed are stored in the session, so
the parameter table reads them instead of measuring ``.grad`` again. Changing ``.grad`` is not an
edit of the weights, so it does not go through the undo stack; the panel emits
``state.gradientsChanged`` so the other views refresh.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.backward.backward import BackwardResult, run, zero_grad
from paramscope.core.backward.gradient_norms import norms_from_result
from paramscope.core.backward.losses import STRUCTURE_NOTE
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.model.diagnostics import ERROR, WARNING
from paramscope.core.model.report import is_lazy
from paramscope.core.state.backward_state import EXPLORE_INPUTS, MODES, BackwardState
from paramscope.gui import colors
from paramscope.gui.models.param_table import fmt_float
from paramscope.gui.panels.backward_form import BackwardForm
from paramscope.gui.panels.frozen_table import FrozenColumnTableView
from paramscope.gui.panels.gradient_table import COLUMNS, GradientRow, GradientTableModel, PlainRows
from paramscope.gui.plots.signal_plot import SignalPlot
from paramscope.gui.state import AppState
from paramscope.gui.widths import guard_wheel, wrapping
from paramscope.gui.workers import TaskWorker

__all__ = ["COLUMNS", "EXPLORE_INPUTS", "MODES", "BackwardPanel", "GradientTableModel"]

# px: the widest the Parameter column opens ("model.layers.10.self_attn.q_proj.weight" fits)
NAME_WIDTH_CAP = 320


class BackwardPanel(QWidget):
    """Input, loss and mode; Run backward and Zero grad; gradients, diagnostics, signal plot.

    ``backward_state`` holds what is asked; the form's widgets are bound to it.

    Signals:
        finished(object): a run ended with this :class:`BackwardResult`.
        failed(str): a run failed with this one-line message (the weights are unchanged; so
            is ``.grad``, unless a backward that raised while replacing cleared it).
    """

    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.backward_state = BackwardState()
        self.result: BackwardResult | None = None
        self.inline_error: str | None = None
        self.worker = TaskWorker(self)
        self.form = BackwardForm(self.backward_state)
        form = self.form  # the widgets by the names the window and the tests use
        self.input_edit, self.default_button, self.seed_spin = form.input_edit, form.default_button, form.seed_spin
        self.loss_combo, self.mode_combo, self.accumulate_box = form.loss_combo, form.mode_combo, form.accumulate_box
        self.run_button, self.zero_button, self.input_note = form.run_button, form.zero_button, form.input_note
        self._build_results()
        self._lay_out()
        self.default_button.clicked.connect(self.reset_input)
        self.run_button.clicked.connect(self.run_backward)
        self.zero_button.clicked.connect(self.zero_grad)
        self.input_edit.returnPressed.connect(self.run_backward)  # Enter runs, as in a search box
        self.table.selectionModel().currentRowChanged.connect(self._on_row)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.done.connect(lambda: self._set_busy(False))
        state.sessionChanged.connect(self._on_session)
        self._on_session()
        guard_wheel(self)

    def _build_results(self) -> None:
        self.loss_note = QLabel(f"Note: {STRUCTURE_NOTE}.")
        self.loss_note.setWordWrap(True)
        self.loss_note.setStyleSheet("color: gray")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.unavailable = QLabel()
        self.unavailable.setWordWrap(True)
        self.unavailable.setStyleSheet("color: #aa0000")
        self.output_label = wrapping(QLabel("Output: -    Loss: -"))
        self.output_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table_model = GradientTableModel(self)
        self.table = FrozenColumnTableView()  # the names stay while the numbers scroll
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # blocks.…3.attn.weight
        # Sized to the names (see _fit_name_column), not stretched: with nine columns in a dock a
        # stretched first column shrank to its minimum and every name read "model...eight".
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.values = QPlainTextEdit()
        self.values.setReadOnly(True)
        self.values.setPlaceholderText("Select a parameter: its .grad as print(param.grad) shows it")
        self.diagnostics = QTreeWidget()
        self.diagnostics.setHeaderLabels(["", "After backward"])
        self.diagnostics.setRootIsDecorated(False)
        self.diagnostics.setWordWrap(True)
        self.signal_plot = SignalPlot()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.signal_plot, "Signal propagation")
        self.tabs.addTab(self.diagnostics, "Diagnostics")
        self.tabs.addTab(self.values, "Gradient values")

    def _lay_out(self) -> None:
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.tabs)
        layout = QVBoxLayout(self)
        layout.addWidget(self.unavailable)
        layout.addWidget(self.form)
        for label in (self.input_note, self.loss_note, self.output_label, self.status):
            layout.addWidget(label)
        layout.addWidget(splitter, 1)

    # --- state ---------------------------------------------------------------------------------
    def _on_session(self) -> None:
        self.worker.cancel()  # a run on the previous model must not fill in this one
        self.result = None
        self.signal_plot.set_points([])
        self.diagnostics.clear()
        self.values.clear()
        self.output_label.setText("Output: -    Loss: -")
        self.status.clear()
        if not self.state.has_session:
            self._set_available("no model is open")
            self.table_model.set_rows([])
            return
        why = self.state.session.opened.forward_unavailable
        self._set_available(None if why is None else f"backward unavailable: {why}")
        self.reset_input()
        self._show_plain_rows()

    def _set_available(self, why: str | None) -> None:
        self.unavailable.setText(why or "")
        self.unavailable.setVisible(why is not None)
        for widget in (self.input_edit, self.default_button, self.run_button, self.zero_button, self.loss_combo):
            widget.setEnabled(why is None)

    def reset_input(self) -> None:
        """The input the model suggests (or the tensors given to explore())."""
        if self.state.has_session:
            self.backward_state.reset_input(self.state.session)

    def _show_plain_rows(self) -> None:
        """Rows before any run in this panel: .grad None (as the tutorial prints) or existing."""
        session = self.state.session
        self.table_model.set_rows(PlainRows(list(session.report.parameters), session.has_grad))
        self._fit_name_column()

    def _fit_name_column(self) -> None:
        """Parameter names whole up to :data:`NAME_WIDTH_CAP` and 70% of the table's width, so a
        number column stays in view (the rest scroll under the names)."""
        cap = min(NAME_WIDTH_CAP, int(0.7 * self.table.viewport().width())) if self.table.isVisible() else NAME_WIDTH_CAP
        self.table.horizontalHeader().resizeSection(0, min(self.table.sizeHintForColumn(0), cap))

    # --- actions -------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.worker.is_running

    def run_backward(self) -> None:
        if not self.state.has_session or self.worker.is_running:
            return
        if self.state.refuse_if_busy("backward"):  # e.g. a large edit is being computed
            return
        try:
            request = self.backward_state.request(self.state.session)
        except ParamscopeError as exc:
            self._show_error(str(exc))
            return
        self._set_busy(True)
        self.status.setText("running forward and backward…")
        self.worker.start(lambda task_state: run(request, task_state), "backward")

    def zero_grad(self) -> None:
        if not self.state.has_session or self.worker.is_running:
            return
        session = self.state.session
        cleared = zero_grad(session.model)
        self.result = None
        self.state.replace_grad_norms(dict.fromkeys(session.report.parameters))
        self._show_plain_rows()
        self.values.clear()
        self.status.setText(f"zero grad: {cleared} gradient(s) set to None")
        self.state.gradientsChanged.emit()

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.run_button, self.zero_button):
            widget.setEnabled(not busy and not self.unavailable.isVisible())
        self.state.set_busy(busy, "backward")

    def _show_error(self, message: str) -> None:
        self.status.setText(f"<span style='color:#aa0000'>{_escape(message)}</span>")
        self.inline_error = message  # the window shows it here only, not again in a dialog
        self.failed.emit(message)
        self.state.errorOccurred.emit(message)

    def _on_failed(self, message: str) -> None:
        if self.state.has_session and _shaped_lazily(self.state.session):
            self.state.session.rebuild()  # the forward shaped lazy parameters, then failed
        if self._gradients_cleared():  # a backward that raised while replacing .grad
            self.result = None
            self.state.forget_grad_norms()  # measured again, in a worker
            self._show_plain_rows()
            self.values.clear()
            self.state.gradientsChanged.emit()
        self._show_error(message)

    def _gradients_cleared(self) -> bool:
        """Rows show a gradient that the parameter no longer has."""
        if not self.state.has_session:
            return False
        session = self.state.session
        names = session.report.parameters
        return any(
            row.part is None and row.has_grad and row.name in names and session.tensor(row.name).grad is None
            for row in self.table_model.rows
        )

    def _on_finished(self, result: BackwardResult) -> None:
        if result.structure_changed:
            self.state.session.rebuild()  # lazy parameters have shapes now (clears the panel)
        self.result = result
        self._show_result(result)
        self.state.replace_grad_norms(norms_from_result(result))  # computed once, in the worker
        self.state.gradientsChanged.emit()
        self.finished.emit(result)

    # --- display -------------------------------------------------------------------------------
    def _show_result(self, result: BackwardResult) -> None:
        out = result.output
        if out.value is not None:
            output_text = f"{out.value:.6g}"
        elif len(out.leaves) == 1:
            leaf = out.leaves[0]
            output_text = f"shape {list(leaf.shape)}, mean {fmt_float(leaf.stats.mean)}, std {fmt_float(leaf.stats.std)}"
        else:
            output_text = f"{out.type_name} of {len(out.leaves)} tensors"
        self.output_label.setText(
            f"Output: {output_text}    Loss ({result.loss_name}): {result.loss:.6g}"
        )
        mode = "accumulated into .grad" if result.accumulate else "replaced .grad"
        notes = "; ".join(result.notes)
        self.status.setText(
            f"backward on {result.inputs}: {mode}" + (f". {notes}" if notes else "")
        )
        rows: list[GradientRow] = []
        for name, gradient in result.parameters.items():
            rows.append(GradientRow(name, gradient, has_grad=gradient.grad is not None))
            rows.extend(GradientRow(name, gradient, part) for part in gradient.parts)
        self.table_model.set_rows(rows)
        self._fit_name_column()
        self.diagnostics.clear()
        for diagnostic in result.diagnostics:
            item = QTreeWidgetItem([diagnostic.severity, diagnostic.message])
            item.setToolTip(1, diagnostic.message)
            color = {ERROR: colors.NONFINITE_TEXT, WARNING: colors.WARNING_TEXT}.get(
                diagnostic.severity
            )
            if color is not None:
                item.setForeground(0, colors.on_window(color))
            self.diagnostics.addTopLevelItem(item)
        self.diagnostics.resizeColumnToContents(0)
        self.signal_plot.set_points(result.signal)

    def parts_text(self, name: str) -> str:
        """``6 = 3 + 3`` for a tied parameter with one-element parts, else the part norms."""
        if self.result is None or name not in self.result.parameters:
            return ""
        g = self.result.parameters[name]
        if not g.parts:
            return ""
        if (
            g.values is not None
            and g.values.numel() == 1
            and all(p.values is not None for p in g.parts)
        ):
            terms = " + ".join(f"{p.values.item():g}" for p in g.parts)  # type: ignore[union-attr]
            return f"{g.values.item():g} = {terms}"
        return " + ".join(f"{p.module}: |{fmt_float(p.stats.norm)}|" for p in g.parts)

    def _on_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        row = self.table_model.rows[current.row()]
        if self.state.has_session and row.name in self.state.session.report.parameters:
            self.state.select_tensor(row.name)
        g = row.gradient
        lines = []
        if row.part is not None:
            lines.append(f"gradient from the use in {row.part.module}:")
            values = row.part.values
        else:
            lines.append(f"{row.name}.grad:")
            values = None if g is None else g.values
        if values is not None:
            lines.append(str(values))
        elif g is None or g.grad is None:
            lines.append("None")
        else:
            lines.append("(too large to print: see the statistics and the histogram)")
        parts = self.parts_text(row.name)
        if parts:
            lines.append("")
            lines.append(f"sum of the uses: {parts}")
        self.values.setPlainText("\n".join(lines))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shaped_lazily(session: Session) -> bool:
    """The report lists a lazy parameter (no shape) that the model no longer holds as lazy: a
    forward shaped it."""
    lazy = [name for name, info in session.report.parameters.items() if info.shape is None]
    return any(not is_lazy(session.tensor(name)) for name in lazy)
