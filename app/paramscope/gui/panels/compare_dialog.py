"""Compare initialization schemes on the signal: the same input through each, drawn together.

The user ticks schemes — the current weights, the Initialize panel's choice (what Preview
shows), presets such as ``pytorch``, ``gpt2`` or ``mup(base_width=32)``, or any rule — and
:func:`paramscope.core.init.compare.compare_schemes` runs one forward and backward per scheme, the
model restored after each. The activation and gradient std per layer are drawn in one
:class:`~paramscope.gui.plots.signal_plot.SignalPlot` (one colour per scheme) and listed in a table;
the plot exports as PNG/SVG and the values as CSV.

The comparison runs in a :class:`~paramscope.gui.workers.TaskWorker` on a deep copy of the
model: the schemes' temporary values are never seen by the window's other views (statistics,
histograms), and a cancelled run leaves nothing to put back. The model is marked busy while it
runs, so an edit waits rather than racing the copy.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.backward.input_specs import parse_input_spec
from paramscope.core.backward.losses import LOSSES
from paramscope.core.backward.sample_input import sample_input_text
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.files.atomic import write_text_atomically
from paramscope.core.init.compare import CURRENT, Comparison, compare_schemes
from paramscope.core.tasks import SliceState, TaskState
from paramscope.gui.models.param_table import fmt_float
from paramscope.gui.plots import plot_export
from paramscope.gui.plots.signal_plot import SignalPlot
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker

#: Item data of the scheme that stands for the Initialize panel's current choice.
PANEL = "\0panel"
#: Presets listed at first (editable: double-click to change the arguments); ticked ones first.
DEFAULT_SCHEMES = [(CURRENT, True), (PANEL, True), ("pytorch", True), ("lsuv", False), ("gpt2", False),
                   ("bert", False), ("fixup", False), ("mup(base_width=32)", False)]  # fmt: skip
BUSY = "compare"


@dataclass(frozen=True)
class CompareRequest:
    """What to run: ``(label, scheme)`` pairs (the scheme as compare_schemes takes it)."""

    schemes: list[tuple[str, str]]
    input_text: str
    seed: int
    loss: str


def isolated_session(session: Session) -> Session:
    """A session over a deep copy of the model: the comparison never touches the live one."""
    try:
        model = copy.deepcopy(session.model)
    except Exception as exc:  # e.g. a module keeping a tensor with a grad_fn
        raise ParamscopeError(f"compare: cannot copy the model to compare on ({type(exc).__name__}: {exc})") from exc
    return Session(dataclasses.replace(session.opened, model=model))


def run_comparison(session: Session, request: CompareRequest, state: TaskState) -> Comparison:
    """Copy the model, compare the schemes on the copy, name the results by their labels."""
    inputs = parse_input_spec(request.input_text)
    state.progress(0.0, "copying the model")
    isolated = isolated_session(session)
    comparison = compare_schemes(isolated, [s for _, s in request.schemes], inputs, seed=request.seed,
                                 loss=request.loss, state=SliceState(state, 0.05, 1.0))  # fmt: skip
    for (label, _), result in zip(request.schemes, comparison.schemes, strict=True):
        result.name = label
    return comparison


class CompareDialog(QDialog):
    """Schemes to compare, input, Run/Cancel; the overlaid plot, a table, exports.

    Args:
        panel_rule: gives ``(label, rule text)`` of the Initialize panel's current choice, or
            raises :class:`ParamscopeError` saying why there is none.

    Signals:
        compared(object): a run finished with this :class:`~paramscope.core.init.compare.Comparison`.
        failed(str): a run failed or could not start (one line, also shown in the dialog).
    """

    compared = Signal(object)
    failed = Signal(str)

    def __init__(self, state: AppState, panel_rule: Callable[[], tuple[str, str]] | None = None,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Compare initialization schemes on the signal")
        self.state = state
        self.panel_rule = panel_rule
        self.comparison: Comparison | None = None
        self.worker = TaskWorker(self)
        self.signal_plot = SignalPlot()
        self.signal_plot.empty_text = "Tick two or more schemes and press Run: one colour per scheme."
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_controls())
        splitter.addWidget(self._build_results())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([280, 760])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)
        self.resize(1080, 680)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._show_error)
        self.worker.done.connect(lambda: self._set_running(False))
        self.worker.cancelled.connect(lambda: self.message.setText("cancelled; the model is unchanged"))
        state.sessionChanged.connect(self._on_session)
        self._on_session()

    # --- building ------------------------------------------------------------------------------
    def _build_controls(self) -> QWidget:
        self.schemes = QListWidget()
        self.schemes.setToolTip("Tick the schemes to compare; double-click a preset or rule to edit it")
        for text, checked in DEFAULT_SCHEMES:
            self.add_scheme(text, checked)
        self.new_scheme = QLineEdit()
        self.new_scheme.setPlaceholderText("a preset or a rule: weights=xavier_normal")
        self.add_button = QPushButton("Add")
        self.add_button.clicked.connect(self._add_typed)
        self.new_scheme.returnPressed.connect(self._add_typed)
        add_row = QHBoxLayout()
        add_row.addWidget(self.new_scheme, 1)
        add_row.addWidget(self.add_button)
        self.input_edit = QLineEdit()
        self.input_edit.setToolTip("The same input for every scheme: rand(64,4), randn(...), randint(...), a .pt file")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("One seed for every scheme's initializers, the input and dropout")
        self.loss_combo = QComboBox()
        self.loss_combo.addItems(list(LOSSES))
        form = QFormLayout()
        form.addRow("Input", self.input_edit)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Loss", self.loss_combo)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.worker.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.hide()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(QLabel("Schemes"))
        column.addWidget(self.schemes, 1)
        column.addLayout(add_row)
        column.addLayout(form)
        column.addLayout(buttons)
        column.addWidget(self.progress)
        column.addWidget(self.message)
        return box

    def _build_results(self) -> QWidget:
        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setPlaceholderText("The rules each scheme applied, and what they said")
        tabs = QTabWidget()
        tabs.addTab(self.table, "Values")
        tabs.addTab(self.details, "Rules and notes")
        self.export_plot_button = QPushButton("Export plot…")
        self.export_plot_button.setToolTip("The plot as PNG or SVG")
        self.export_plot_button.clicked.connect(self.export_plot_dialog)
        self.export_csv_button = QPushButton("Export CSV…")
        self.export_csv_button.setToolTip("One row per layer: activation and gradient std per scheme")
        self.export_csv_button.clicked.connect(self.export_csv_dialog)
        exports = QHBoxLayout()
        exports.addStretch(1)
        exports.addWidget(self.export_plot_button)
        exports.addWidget(self.export_csv_button)
        results = QSplitter(Qt.Orientation.Vertical)
        results.addWidget(self.signal_plot)
        results.addWidget(tabs)
        results.setSizes([420, 220])
        box = QWidget()
        column = QVBoxLayout(box)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(results, 1)
        column.addLayout(exports)
        self._set_exportable(False)
        return box

    # --- schemes -------------------------------------------------------------------------------
    def add_scheme(self, text: str, checked: bool = True) -> QListWidgetItem:
        """List a scheme (a preset, a rule, ``current`` or :data:`PANEL`), ticked or not."""
        label = "Initialize panel's choice" if text == PANEL else text
        item = QListWidgetItem(label)
        if text == PANEL:
            item.setToolTip("What the Initialize panel would apply now (its targets, initializer and arguments)")
        flags = item.flags() | Qt.ItemFlag.ItemIsUserCheckable
        if text not in (PANEL, CURRENT):
            flags |= Qt.ItemFlag.ItemIsEditable
        item.setFlags(flags)
        item.setData(Qt.ItemDataRole.UserRole, text)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.schemes.addItem(item)
        return item

    def _add_typed(self) -> None:
        text = self.new_scheme.text().strip()
        if text:
            self.add_scheme(text)
            self.new_scheme.clear()

    def set_checked(self, texts: list[str]) -> None:
        """Tick exactly the schemes whose text (or label) is in ``texts``."""
        for row in range(self.schemes.count()):
            item = self.schemes.item(row)
            wanted = item.text() in texts or item.data(Qt.ItemDataRole.UserRole) in texts
            item.setCheckState(Qt.CheckState.Checked if wanted else Qt.CheckState.Unchecked)

    def checked_schemes(self) -> list[tuple[str, str]]:
        """``(label, scheme)`` of the ticked schemes; the panel's choice read now."""
        chosen: list[tuple[str, str]] = []
        for row in range(self.schemes.count()):
            item = self.schemes.item(row)
            if item.checkState() != Qt.CheckState.Checked:
                continue
            if item.data(Qt.ItemDataRole.UserRole) == PANEL:
                if self.panel_rule is None:
                    raise ParamscopeError("compare: no Initialize panel to take a scheme from")
                chosen.append(self.panel_rule())
            else:
                text = item.text().strip()  # edited in place: the text is the scheme
                chosen.append((text, text))
        return chosen

    # --- running -------------------------------------------------------------------------------
    def _on_session(self) -> None:
        self.worker.cancel()
        self.comparison = None
        self.signal_plot.set_comparison([])
        self.table.clear()
        self.table.setRowCount(0)
        self.details.clear()
        self._set_exportable(False)
        if not self.state.has_session:
            self.run_button.setEnabled(False)
            return
        session = self.state.session
        why = session.opened.forward_unavailable
        self.run_button.setEnabled(why is None)
        self.message.setText("" if why is None else f"compare needs the model's forward: {why}")
        if why is None:
            self.input_edit.setText(sample_input_text(session.model))

    def run(self) -> bool:
        """Start the comparison in the worker (False: refused, with a one-line message)."""
        if not self.state.has_session or self.worker.is_running:
            return False
        try:
            schemes = self.checked_schemes()
            if not schemes:
                raise ParamscopeError("compare: tick at least one scheme")
            parse_input_spec(self.input_edit.text())  # a bad spec is said before anything runs
        except ParamscopeError as exc:
            self._show_error(str(exc))
            return False
        if self.state.model_busy is not None:
            self._show_error(f"compare: wait until the {self.state.model_busy} task finishes")
            return False
        request = CompareRequest(schemes, self.input_edit.text().strip(), self.seed_spin.value(),
                                 self.loss_combo.currentText())  # fmt: skip
        session = self.state.session
        self._set_running(True)
        self.message.setText(f"comparing {len(schemes)} scheme(s) on {request.input_text}…")
        self.worker.start(lambda task_state: run_comparison(session, request, task_state), "compare")
        return True

    def _set_running(self, running: bool) -> None:
        if not running and not self.cancel_button.isEnabled():
            return  # not running: nothing to say (a cancel with nothing running)
        self.run_button.setEnabled(not running and self.state.has_session)
        self.cancel_button.setEnabled(running)
        self.progress.setVisible(running)
        self.progress.setValue(0)
        self.state.set_busy(running, BUSY)

    def _on_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(f"{message} %p%" if message else "%p%")

    def _on_finished(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.signal_plot.set_comparison([(s.name, s.points) for s in comparison.schemes])
        self._fill_table(comparison)
        self._fill_details(comparison)
        self._set_exportable(True)
        losses = ", ".join(f"{s.name}: {s.loss:.4g}" for s in comparison.schemes)
        self.message.setText(f"{len(comparison.schemes)} scheme(s) on {comparison.inputs} (seed {comparison.seed}); "
                             f"loss {losses}. The model is unchanged.")  # fmt: skip
        self.compared.emit(comparison)

    def _show_error(self, message: str) -> None:
        message = " ".join(message.split())
        self.message.setText(f"<span style='color:#aa0000'>{_escape(message)}</span>")
        self.failed.emit(message)

    # --- results -------------------------------------------------------------------------------
    def _fill_table(self, comparison: Comparison) -> None:
        head = ["#", "layer", "type"]
        for scheme in comparison.schemes:
            head += [f"{scheme.name}\nactivation std", f"{scheme.name}\ngradient std"]
        layers = comparison.layers()
        self.table.clear()
        self.table.setColumnCount(len(head))
        self.table.setRowCount(len(layers))
        self.table.setHorizontalHeaderLabels(head)
        for row, (index, module, type_name) in enumerate(layers):
            cells = [str(index), module, type_name]
            for scheme in comparison.schemes:
                point = scheme.points[index] if index < len(scheme.points) else None
                cells += [fmt_float(point.activation_std) if point else "",
                          fmt_float(point.gradient_std) if point else ""]  # fmt: skip
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if column >= 3 or column == 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()

    def _fill_details(self, comparison: Comparison) -> None:
        lines: list[str] = []
        for scheme in comparison.schemes:
            lines.append(f"{scheme.name}: loss {scheme.loss:.6g}")
            lines += [f"    rule: {rule}" for rule in scheme.rules] or ["    (the weights as they are)"]
            lines += [f"    note: {note}" for note in scheme.notes]
        self.details.setPlainText("\n".join(lines))

    def table_text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        return "" if item is None else item.text()

    def _set_exportable(self, on: bool) -> None:
        self.export_plot_button.setEnabled(on)
        self.export_csv_button.setEnabled(on)

    def export_plot(self, path: str | Path) -> Path | None:
        """The overlaid plot as PNG or SVG (by the suffix)."""
        try:
            return plot_export.export_plot(self.signal_plot.plot, path)
        except (ParamscopeError, OSError) as exc:
            self._show_error(f"{path}: could not export the plot: {exc}")
            return None

    def export_csv(self, path: str | Path) -> Path | None:
        """One row per layer: index, module, type, then activation and gradient std per scheme."""
        if self.comparison is None:
            return None
        try:
            return write_text_atomically(Path(path), self.comparison.csv())
        except OSError as exc:
            self._show_error(f"{path}: could not write the CSV: {exc.strerror or exc}")
            return None

    def _ask_path(self, title: str, suffix: str, filters: str) -> str:
        folder = Path(str(QSettings().value("lastExportFolder", str(Path.home()))))
        path, _ = QFileDialog.getSaveFileName(self, title, str(folder / f"compare-init{suffix}"), filters)
        if path:
            QSettings().setValue("lastExportFolder", str(Path(path).parent))
        return path

    def export_plot_dialog(self) -> None:
        path = self._ask_path("Export comparison plot", ".png", plot_export.PLOT_FILTER)
        if path and self.export_plot(path):
            self.message.setText(f"plot written to {path}")

    def export_csv_dialog(self) -> None:
        path = self._ask_path("Export comparison values", ".csv", plot_export.CSV_FILTER)
        if path and self.export_csv(path):
            self.message.setText(f"values written to {path}")

    def closeEvent(self, event) -> None:  # noqa: N802
        self.worker.cancel()  # the run is on a copy: nothing to put back
        super().closeEvent(event)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
