"""Backward panel: a sample input, a loss, Run backward / Zero grad, and every gradient.

The pass runs in a :class:`~paramscope.gui.workers.TaskWorker` (core
:func:`paramscope.core.backward.run`), never on the GUI thread. The panel shows the output and
loss, a gradient table (per-use parts of a tied parameter as rows under it: the tutorial's
6 = 3 + 3), the diagnostics found after backward and the signal-propagation plot. Changing
``.grad`` is not an edit of the weights, so it does not go through the undo stack; the panel
emits ``state.gradientsChanged`` so the other views refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.backward import (
    BackwardRequest,
    BackwardResult,
    GradPart,
    ParameterGradient,
    run,
    zero_grad,
)
from paramscope.core.diagnostics import ERROR, WARNING
from paramscope.core.errors import ParamscopeError
from paramscope.core.inputs import default_input, parse_input_spec
from paramscope.core.losses import LOSSES, STRUCTURE_NOTE
from paramscope.gui import colors
from paramscope.gui.multidata import OneCallPerCell
from paramscope.gui.param_table import fmt_float
from paramscope.gui.signal_plot import SignalPlot
from paramscope.gui.state import AppState
from paramscope.gui.widths import guard_wheel, narrow_combo, shrinkable_spin, wrapping
from paramscope.gui.workers import TaskWorker

AnyIndex = QModelIndex | QPersistentModelIndex
COLUMNS = [
    "Parameter",
    "Shape",
    "grad norm",
    "mean",
    "max |g|",
    "grad/weight",
    "zero frac",
    "NaN/Inf",
]
MODES = {"as is": None, "train": True, "eval": False}
# Shown in the input box when paramscope.explore(model, inputs) gave the input tensors.
EXPLORE_INPUTS = "inputs given to explore()"


@dataclass(frozen=True)
class _Row:
    name: str  # canonical parameter name
    gradient: ParameterGradient | None  # None: no backward yet (or zero grad) in this panel
    part: GradPart | None = None  # a per-use part row under its parameter
    has_grad: bool = False  # for rows without a result: .grad is not None


class GradientTableModel(OneCallPerCell, QAbstractTableModel):
    """One row per parameter, then one row per use of a tied parameter."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.rows: list[_Row] = []

    def set_rows(self, rows: list[_Row]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(index.row(), index.column())
        if role == Qt.ItemDataRole.ForegroundRole:
            if row.part is not None:
                return colors.MUTED_TEXT
            g = row.gradient
            if g is not None and g.grad is not None and g.grad.nonfinite:
                return colors.NONFINITE_TEXT
        if role == Qt.ItemDataRole.ToolTipRole and row.gradient is not None and row.part is None:
            g = row.gradient
            if len(g.aliases) > 1:
                return "also named " + ", ".join(g.aliases[1:])
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def text(self, row_index: int, column: int) -> str:
        row = self.rows[row_index]
        g = row.gradient
        if row.part is not None:
            stats = row.part.stats
            if column == 0:
                return f"    ↳ use in {row.part.module}"
            values = {2: stats.norm, 3: stats.mean,
                      4: None if stats.min is None or stats.max is None else max(abs(stats.min), abs(stats.max)),
                      6: stats.zero_fraction}  # fmt: skip
            if column in values:
                return fmt_float(values[column])
            if column == 7:
                return f"{stats.nan}/{stats.inf}"
            return ""
        if column == 0:
            return row.name
        if g is None:
            if column == 2:
                return "(not from this panel)" if row.has_grad else "None"
            return ""
        if column == 1:
            return "uninit" if g.shape is None else "[" + ", ".join(map(str, g.shape)) + "]"
        if g.grad is None:
            return ("frozen" if not g.requires_grad else "None") if column == 2 else ""
        s = g.grad
        if column == 7:
            return f"{s.nan}/{s.inf}"
        values = {2: s.norm, 3: s.mean, 4: g.max_abs, 5: g.ratio, 6: s.zero_fraction}
        return fmt_float(values.get(column))


class BackwardPanel(QWidget):
    """Input, loss and mode; Run backward and Zero grad; gradients, diagnostics, signal plot.

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
        self.result: BackwardResult | None = None
        self.worker = TaskWorker(self)

        self.input_edit = QLineEdit()
        self.input_edit.setToolTip(
            "rand(2,4), randn(...), ones(...), zeros(...), randint(2,16,high=100), dtype=float64, "
            "or a .pt file; several inputs separated by ';'"
        )
        self.default_button = QPushButton("Default")
        self.default_button.setToolTip("The input inferred from the model's first layer")
        self.default_button.clicked.connect(self.reset_input)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Seed of random inputs, cross-entropy labels and dropout")
        self.loss_combo = QComboBox()
        for name, loss in LOSSES.items():
            self.loss_combo.addItem(name, name)
            self.loss_combo.setItemData(
                self.loss_combo.count() - 1, loss.description, Qt.ItemDataRole.ToolTipRole
            )
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(MODES))
        self.mode_combo.setToolTip(
            "Module mode during the pass (restored afterwards, with BatchNorm statistics)"
        )
        self.accumulate_box = QCheckBox("Accumulate")
        self.accumulate_box.setToolTip(
            "Add to existing .grad as PyTorch does; unchecked replaces it"
        )
        self.run_button = QPushButton("Run backward")
        self.run_button.clicked.connect(self.run_backward)
        self.zero_button = QPushButton("Zero grad")
        self.zero_button.setToolTip("Set every .grad to None, as before any backward")
        self.zero_button.clicked.connect(self.zero_grad)

        self.input_edit.returnPressed.connect(self.run_backward)  # Enter runs, as in a search box
        narrow_combo(self.loss_combo)
        narrow_combo(self.mode_combo, 6)
        # Short rows: the dock keeps its width at ~300 px (nothing behind a horizontal scrollbar).
        input_row = QHBoxLayout()
        input_row.addWidget(self.input_edit, 1)
        input_row.addWidget(self.default_button)
        shrinkable_spin(self.seed_spin)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin)
        seed_row.addWidget(QLabel("mode"))
        seed_row.addWidget(self.mode_combo)
        seed_row.addStretch(1)
        loss_row = QHBoxLayout()
        loss_row.addWidget(self.loss_combo, 1)
        loss_row.addWidget(self.accumulate_box)
        run_row = QHBoxLayout()  # a row of its own: the panel stays usable in a narrow dock
        run_row.addStretch(1)
        run_row.addWidget(self.run_button)
        run_row.addWidget(self.zero_button)
        form = QFormLayout()
        form.addRow("Input", input_row)
        form.addRow("Seed", seed_row)
        form.addRow("Loss", loss_row)
        form.addRow("", run_row)
        self.input_note = QLabel()
        self.input_note.setWordWrap(True)
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
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # blocks.…3.attn.weight
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)

        self.values = QPlainTextEdit()
        self.values.setReadOnly(True)
        self.values.setPlaceholderText(
            "Select a parameter: its .grad as print(param.grad) shows it"
        )
        self.diagnostics = QTreeWidget()
        self.diagnostics.setHeaderLabels(["", "After backward"])
        self.diagnostics.setRootIsDecorated(False)
        self.diagnostics.setWordWrap(True)
        self.signal_plot = SignalPlot()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.signal_plot, "Signal propagation")
        self.tabs.addTab(self.diagnostics, "Diagnostics")
        self.tabs.addTab(self.values, "Gradient values")

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.tabs)
        layout = QVBoxLayout(self)
        layout.addWidget(self.unavailable)
        layout.addLayout(form)
        layout.addWidget(self.input_note)
        layout.addWidget(self.loss_note)
        layout.addWidget(self.output_label)
        layout.addWidget(self.status)
        layout.addWidget(splitter, 1)

        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.done.connect(lambda: self._set_busy(False))
        state.sessionChanged.connect(self._on_session)
        self._on_session()
        guard_wheel(self)

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
        for widget in (
            self.input_edit,
            self.default_button,
            self.run_button,
            self.zero_button,
            self.loss_combo,
        ):
            widget.setEnabled(why is None)

    def reset_input(self) -> None:
        if not self.state.has_session:
            return
        if self._explore_inputs() is not None:
            self.input_edit.setText(EXPLORE_INPUTS)
            self.input_note.setText(
                "the tensors passed to paramscope.explore(); type a spec to use others"
            )
            self.input_note.setVisible(True)
            return
        spec = default_input(self.state.session.model)
        self.input_edit.setText(spec.text)
        self.input_note.setText(spec.note or "")
        self.input_note.setVisible(bool(spec.note))

    def _explore_inputs(self) -> object | None:
        inputs = self.state.session.opened.extras.get("inputs")
        if isinstance(inputs, torch.Tensor):
            return (inputs,)
        if (
            isinstance(inputs, tuple | list)
            and inputs
            and all(isinstance(t, torch.Tensor) for t in inputs)
        ):
            return tuple(inputs)
        return None

    def _show_plain_rows(self) -> None:
        """Rows before any run in this panel: .grad None (as the tutorial prints) or existing."""
        session = self.state.session
        rows = [
            _Row(name, None, has_grad=session.tensor(name).grad is not None)
            for name in session.report.parameters
        ]
        self.table_model.set_rows(rows)

    # --- actions -------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        return self.worker.is_running

    def run_backward(self) -> None:
        if not self.state.has_session or self.worker.is_running:
            return
        if self.state.refuse_if_busy("backward"):  # e.g. a large edit is being computed
            return
        session = self.state.session
        text = self.input_edit.text().strip()
        inputs = self._explore_inputs() if text == EXPLORE_INPUTS else None
        if inputs is None:
            try:
                inputs = parse_input_spec(text)
            except ParamscopeError as exc:
                self._show_error(str(exc))
                return
        request = BackwardRequest(
            session.opened,
            inputs,  # type: ignore[arg-type]
            loss=str(self.loss_combo.currentData()),
            accumulate=self.accumulate_box.isChecked(),
            seed=self.seed_spin.value(),
            train=MODES[self.mode_combo.currentText()],
        )
        self._set_busy(True)
        self.status.setText("running forward and backward…")
        self.worker.start(lambda task_state: run(request, task_state), "backward")

    def zero_grad(self) -> None:
        if not self.state.has_session or self.worker.is_running:
            return
        cleared = zero_grad(self.state.session.model)
        self.result = None
        self._show_plain_rows()
        self.values.clear()
        self.status.setText(f"zero grad: {cleared} gradient(s) set to None")
        self.state.gradientsChanged.emit()

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.run_button, self.zero_button):
            widget.setEnabled(not busy and not self.unavailable.isVisible())
        self.state.busyChanged.emit(busy, "backward")

    def _show_error(self, message: str) -> None:
        self.status.setText(f"<span style='color:#aa0000'>{_escape(message)}</span>")
        self.inline_error = message  # the window shows it here only, not again in a dialog
        self.failed.emit(message)
        self.state.errorOccurred.emit(message)

    def _on_failed(self, message: str) -> None:
        if self._gradients_cleared():  # a backward that raised while replacing .grad
            self.result = None
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
            row.part is None
            and row.has_grad
            and row.name in names
            and session.tensor(row.name).grad is None
            for row in self.table_model.rows
        )

    def _on_finished(self, result: BackwardResult) -> None:
        if result.structure_changed:
            self.state.session.rebuild()  # lazy parameters have shapes now (clears the panel)
        self.result = result
        self._show_result(result)
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
        rows: list[_Row] = []
        for name, gradient in result.parameters.items():
            rows.append(_Row(name, gradient, has_grad=gradient.grad is not None))
            rows.extend(_Row(name, gradient, part) for part in gradient.parts)
        self.table_model.set_rows(rows)
        self.diagnostics.clear()
        for diagnostic in result.diagnostics:
            item = QTreeWidgetItem([diagnostic.severity, diagnostic.message])
            item.setToolTip(1, diagnostic.message)
            color = {ERROR: colors.NONFINITE_TEXT, WARNING: colors.WARNING_TEXT}.get(
                diagnostic.severity
            )
            if color is not None:
                item.setForeground(0, color)
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
