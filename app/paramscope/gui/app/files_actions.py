"""File actions of the window: Export…, Load weights…, Diff against…, and consent for risky files.

Thin Qt over :mod:`paramscope.core.files`: the work runs as the core's ``run(inputs, state)``
functions in a :class:`TaskWorker`; changes to the model go through the session as commands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QRadioButton,
    QTableView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.edit.load_weights import apply_weights
from paramscope.core.edit.save import save_session
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.files.export import ExportInputs, ExportResult, run_export
from paramscope.core.files.safety import UntrustedFileError
from paramscope.core.files.weights_fit import WeightsReport, compare_weights, mapped_keys
from paramscope.core.sources.diff import DiffInputs, DiffResult, run_diff
from paramscope.core.sources.weights import WeightsInputs, read_weights, run_read_weights
from paramscope.gui.consent import confirm_trust
from paramscope.gui.models.diff_table import COLUMNS, DiffTableModel, diff_rows
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker

EXPORT_FILTER = "safetensors (*.safetensors);;PyTorch state_dict (*.pt *.pth *.bin)"
WEIGHTS_FILTER = "Checkpoints (*.safetensors *.pt *.pth *.bin *.ckpt *.json *.npz *.npy);;All files (*)"


SYNC_EXPORTS_KEY = "export/waitForDisk"  # remembered between runs, as the user left it
TAKING_TENSORS = "diff"  # what the model is busy with while a diff takes its tensors
LISTED_NAMES = 2_000  # per group of the Load weights dialog: 100,000 rows took 0.4 s to build


class DiffView(QWidget):
    """A table per tensor: max |Δ|, relative change, cosine; names only on one side; mismatches."""

    COLUMNS = COLUMNS

    def __init__(self, result: DiffResult | None = None, a: str = "A", b: str = "B", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.summary = QLabel()
        self.model = DiffTableModel(parent=self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # file order first
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)
        if result is not None:
            self.set_result(result, a, b)

    def set_result(self, result: DiffResult, a: str = "A", b: str = "B") -> None:
        self.model.set_rows(diff_rows(result, a, b))
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        same = len(result.tensors) - len(result.changed) - len(result.recast)
        recast = f", {len(result.recast)} same values in another dtype" if result.recast else ""
        self.summary.setText(
            f"{a} vs {b}: {len(result.changed)} changed, {same} identical{recast}, {len(result.only_a)} only in A, "
            f"{len(result.only_b)} only in B, {len(result.mismatched)} mismatched"
        )


class LoadWeightsDialog(QDialog):
    """Shows how a state_dict fits the model before anything changes; strict or partial."""

    def __init__(self, report: WeightsReport, source: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Load weights from {Path(source).name}")
        self.report = report
        self.summary = QLabel(report.summary())
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["name", "detail"])
        groups = (
            ("Missing in the file", [(n, "") for n in report.missing]),
            ("Unexpected in the file", [(n, "") for n in report.unexpected]),
            ("Mismatched", [(m.name, m.reason) for m in report.mismatched]),
            ("Converted", [(m.name, m.reason) for m in report.converted]),
            ("Matching", [(n, k if k != n else "") for n, k in report.matched.items()]),
        )
        for title, items in groups:
            top = QTreeWidgetItem([f"{title} ({len(items)})", ""])
            top.addChildren([QTreeWidgetItem([name, detail]) for name, detail in items[:LISTED_NAMES]])
            if len(items) > LISTED_NAMES:
                top.addChild(QTreeWidgetItem([f"… and {len(items) - LISTED_NAMES:,} more", "paramscope diff MODEL FILE --all lists every name"]))
            self.tree.addTopLevelItem(top)
            top.setExpanded(bool(items) and title != "Matching")
        self.strict_button = QRadioButton("Strict: every tensor must match")
        self.partial_button = QRadioButton("Partial: load the matching tensors, leave the rest")
        group = QButtonGroup(self)
        group.addButton(self.strict_button)
        group.addButton(self.partial_button)
        (self.strict_button if report.fits else self.partial_button).setChecked(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Cancel)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.clicked.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.strict_button.toggled.connect(self._update)
        self.use_suggestion = False  # True: the user chose the suggested key change
        self.suggestion_button: QPushButton | None = None
        if report.suggestion is not None:
            self.suggestion_button = self.buttons.addButton(
                suggestion_text(report), QDialogButtonBox.ButtonRole.ActionRole
            )
            self.suggestion_button.setToolTip(
                f"Compare again after {report.suggestion.describe()} in the file's keys, then load "
                f"(on the command line: {report.suggestion.option})"
            )
            self.suggestion_button.clicked.connect(self._take_suggestion)
        layout = QVBoxLayout(self)
        for widget in (self.summary, self.tree, self.strict_button, self.partial_button, self.buttons):
            layout.addWidget(widget)
        self._update()

    @property
    def strict(self) -> bool:
        return self.strict_button.isChecked()

    def _update(self) -> None:
        allowed = self.report.fits if self.strict else bool(self.report.matched)
        self.apply_button.setEnabled(allowed)

    def _take_suggestion(self) -> None:
        self.use_suggestion = True
        self.accept()


def suggestion_text(report: WeightsReport) -> str:
    """The label of the dialog's button: "Strip 'module.' and load" or the general one."""
    suggestion = report.suggestion
    if suggestion is not None and suggestion.strip:
        return f"Strip {suggestion.strip!r} and load"
    return "Apply suggested key change and load"


class FilesActions(QObject):
    """Export…, Load weights… and Diff against… for one AppState (menus call these)."""

    exportFinished = Signal(object)  # ExportResult
    weightsRead = Signal(object)  # (source, tensors, report)
    weightsApplied = Signal(object)  # WeightsReport
    diffReady = Signal(object)  # DiffResult

    def __init__(self, state: AppState, parent: QWidget | None = None, *, interactive: bool = True) -> None:
        super().__init__(parent)
        self.state = state
        self.window = parent
        self.interactive = interactive
        self.worker = TaskWorker(self)
        self.worker.failed.connect(self.state.errorOccurred.emit)
        self.diff_view: DiffView | None = None
        self._on_finished: Callable[[Any], None] | None = None
        self.worker.finished.connect(self._finished)
        self._taking: Session | None = None  # a diff is taking this session's tensors
        self.worker.partial.connect(lambda _taken: self._taken())
        self.worker.done.connect(self._taken)  # (failed or cancelled before: busy no longer)
        self.sync_action = QAction("Wait for the disk when exporting", self)
        self.sync_action.setCheckable(True)
        self.sync_action.setChecked(QSettings().value(SYNC_EXPORTS_KEY, False, type=bool))
        self.sync_action.toggled.connect(lambda on: QSettings().setValue(SYNC_EXPORTS_KEY, on))
        explained = (
            "Flush each exported file to disk (fsync) before it replaces the old one: even a "
            "power cut then leaves the old or the new file. About a second per GB."
        )
        self.sync_action.setToolTip(explained)
        self.sync_action.setStatusTip(explained)  # menus show status tips, not tooltips

    def install(self, menu: QMenu) -> None:
        menu.addAction("&Export state_dict…").triggered.connect(self.export_dialog)
        menu.addAction("Export selected &module…").triggered.connect(self.export_module_dialog)
        menu.addAction(self.sync_action)
        menu.addAction("&Load weights…").triggered.connect(self.load_weights_dialog)
        menu.addAction("&Diff against…").triggered.connect(self.diff_dialog)

    def _taken(self) -> None:
        if self._taking is not None:
            self._taking.set_busy(False, TAKING_TENSORS)
            self._taking = None

    def _finished(self, result: Any) -> None:
        callback, self._on_finished = self._on_finished, None
        if callback is not None:
            callback(result)

    def _start(self, fn: Callable[[Any], Any], what: str, done: Callable[[Any], None]) -> None:
        self._on_finished = done
        self.worker.start(fn, what)

    # --- export ----------------------------------------------------------------------------
    def export_dialog(self) -> None:
        if not self.state.has_session:
            return
        # QFileDialog asks before overwriting an existing file (DontConfirmOverwrite is off)
        path, _ = QFileDialog.getSaveFileName(self.window, "Export state_dict", "", EXPORT_FILTER)
        if path:
            self.start_export(Path(path))

    def export_module_dialog(self) -> None:
        """Export the subtree of the module selected in the tree, names relative to it."""
        if not self.state.has_session:
            return
        module = self.state.selected_module
        title = f"Export state_dict of {module or 'the whole model'}"
        path, _ = QFileDialog.getSaveFileName(self.window, title, "", EXPORT_FILTER)
        if path:
            self.start_export(Path(path), module)

    def start_export(self, path: Path, module: str = "") -> None:
        """Export off the GUI thread; a whole-model export marks the session saved."""
        session = self.state.session
        sync = self.sync_action.isChecked()
        inputs = ExportInputs(session.model, Path(path), module, session.opened.loader, sync)

        def done(result: ExportResult) -> None:
            if not module and self.state.has_session and self.state.session is session:
                session.stack.set_clean()
            self.exportFinished.emit(result)

        self._start(lambda st: run_export(inputs, st), f"Exporting {Path(path).name}", done)

    def save_now(self, path: Path) -> bool:
        """Export synchronously (closing the window waits for it); True when written."""
        try:
            save_session(self.state.session, path, sync=self.sync_action.isChecked())
        except ParamscopeError as exc:
            self.state.errorOccurred.emit(str(exc))
            return False
        return True

    def ask_save_path(self) -> Path | None:
        path, _ = QFileDialog.getSaveFileName(self.window, "Save state_dict", "", EXPORT_FILTER)
        return Path(path) if path else None

    # --- load weights ----------------------------------------------------------------------
    def load_weights_dialog(self) -> None:
        if not self.state.has_session:
            return
        path, _ = QFileDialog.getOpenFileName(self.window, "Load weights", "", WEIGHTS_FILTER)
        if path:
            self.start_read_weights(path)

    def start_read_weights(self, source: str, trust: bool = False) -> None:
        inputs = WeightsInputs(str(source), self.state.session.model, trust)

        def work(st: Any) -> Any:
            try:
                return run_read_weights(inputs, st)
            except UntrustedFileError as exc:  # asked about on the GUI thread
                return exc

        def done(result: Any) -> None:
            if isinstance(result, UntrustedFileError):
                if self.interactive and confirm_trust(self.window, result):
                    self.start_read_weights(source, trust=True)
                else:
                    self.state.errorOccurred.emit(str(result))
                return
            tensors, report = result
            self.weightsRead.emit((source, tensors, report))
            if self.interactive:
                self.ask_and_apply(tensors, report, str(source))

        self._start(work, f"Reading {Path(str(source)).name}", done)

    def ask_and_apply(self, tensors: dict, report: WeightsReport, source: str) -> bool:
        """Show the report; apply as the user chooses (strict, partial, or the suggested keys)."""
        dialog = LoadWeightsDialog(report, source, self.window)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return False
        if dialog.use_suggestion:
            return self.apply_suggestion(tensors, report, source)
        return self.apply(tensors, report, source, dialog.strict)

    def apply_suggestion(self, tensors: dict, report: WeightsReport, source: str) -> bool:
        """Compare again under the report's suggested key change (``mapped_keys``), then load.

        All keys fit: loaded at once. A PEFT adapter file (the adapter name inserted) fits the
        adapter's tensors only: they are loaded and the base weights stay, as PEFT does. Else the
        new report is shown (interactive) or the refusal is reported.
        """
        try:
            mapped = mapped_keys(tensors, report, "auto", source)
            mapped_report = compare_weights(self.state.session.model, mapped)
        except ParamscopeError as exc:
            self.state.errorOccurred.emit(str(exc))
            return False
        self.weightsRead.emit((source, mapped, mapped_report))
        adapter = bool(report.suggestion and report.suggestion.insert)
        if mapped_report.fits or (adapter and not mapped_report.unexpected and not mapped_report.mismatched):
            return self.apply(mapped, mapped_report, source, strict=mapped_report.fits)
        if self.interactive:
            return self.ask_and_apply(mapped, mapped_report, source)
        return self.apply(mapped, mapped_report, source, strict=True)  # reports why it does not fit

    def apply(self, tensors: dict, report: WeightsReport, source: str, strict: bool) -> bool:
        """Apply as one undoable command; errors are reported, the model is left as it was."""
        try:
            apply_weights(self.state.session, tensors, strict=strict, where=source, report=report)
        except ParamscopeError as exc:
            self.state.errorOccurred.emit(str(exc))
            return False
        self.weightsApplied.emit(report)
        return True

    # --- diff ------------------------------------------------------------------------------
    def diff_dialog(self) -> None:
        if not self.state.has_session:
            return
        path, _ = QFileDialog.getOpenFileName(self.window, "Diff against checkpoint", "", WEIGHTS_FILTER)
        if path:
            self.start_diff(path)

    def _diff_window(self, view: DiffView) -> DiffView:
        """``view`` as a window of the main window's: over it and centred on it (the window
        manager placed a window of its own half off the screen)."""
        window = self.window
        if window is None:
            view.resize(800, 500)
            return view
        view.setParent(window, Qt.WindowType.Window)
        view.resize(min(800, window.width()), min(500, window.height()))
        view.move(window.frameGeometry().center() - view.rect().center())
        return view

    def start_diff(self, source: str, trust: bool = False) -> None:
        """Compare the open model (A) with ``source`` (B) off the GUI thread; show a DiffView.

        The model's tensors are taken in the worker too (torch's ``state_dict()`` walk held the
        GUI thread 0.9 s at 100,000 tensors); edits wait the moment it takes (the model is busy).
        """
        if self.state.refuse_if_busy("diff"):
            return
        session = self.state.session
        model, title = session.model, session.opened.title
        self.worker.cancel()  # a task this one replaces ends first: its end must not release this busy
        self._taking = session
        session.set_busy(True, TAKING_TENSORS)

        def work(st: Any) -> Any:
            model_state = dict(model.state_dict())
            st.deliver(TAKING_TENSORS)  # taken: edits may go on
            try:
                other = read_weights(source, trust)
            except UntrustedFileError as exc:
                return exc
            return run_diff(DiffInputs(model_state, other), st)

        def done(result: Any) -> None:
            if isinstance(result, UntrustedFileError):
                if self.interactive and confirm_trust(self.window, result):
                    self.start_diff(source, trust=True)
                else:
                    self.state.errorOccurred.emit(str(result))
                return
            if self.diff_view is not None:  # the previous diff's window (closed or not): gone
                self.diff_view.deleteLater()
            self.diff_view = self._diff_window(DiffView(result, title, Path(str(source)).name))
            self.diff_view.setWindowTitle(f"Diff: {title} vs {source}")
            if self.interactive:
                self.diff_view.show()
            self.diffReady.emit(result)

        self._start(work, f"Comparing with {Path(str(source)).name}", done)
