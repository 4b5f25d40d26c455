"""The main window: wires the panels around one AppState. It holds no model state itself."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QWidget,
)

from paramscope.core.demos import DEMOS
from paramscope.core.sources import OpenedModel
from paramscope.gui.backward_panel import BackwardPanel
from paramscope.gui.diagnostics_panel import DiagnosticsPanel
from paramscope.gui.files_actions import FilesActions, confirm_trust, open_with_consent
from paramscope.gui.histogram_panel import HistogramPanel
from paramscope.gui.init_panel import InitPanel
from paramscope.gui.opening import (
    FILE_FILTER,
    add_recent_file,
    clear_recent_files,
    python_candidates,
    recent_files,
    spec_for_path,
)
from paramscope.gui.param_panel import ParameterPanel
from paramscope.gui.state import AppState
from paramscope.gui.statistics_worker import StatisticsWorker
from paramscope.gui.tied_panel import TiedGroupsPanel
from paramscope.gui.tree_panel import ModuleTreePanel
from paramscope.gui.value_grid import ValueGrid


class MainWindow(QMainWindow):
    """Tree | parameter table over [Histogram, Values] tabs | docks for ties and diagnostics.

    Signals:
        errorShown(str): an error message was shown to the user (tests and screenshots listen).
        closed(): the window closed (after the close was confirmed).
    """

    errorShown = Signal(str)
    closed = Signal()

    def __init__(self, state: AppState | None = None, *, interactive: bool = True) -> None:
        super().__init__()
        self.state = state if state is not None else AppState(parent=self)
        self.interactive = interactive  # False: errors go to errorShown only (screenshots, tests)
        self.setAcceptDrops(True)
        self.resize(1600, 1000)
        self.statistics = StatisticsWorker(self.state, self)

        self.tree_panel = ModuleTreePanel(self.state)
        self.param_panel = ParameterPanel(self.state)
        self.histogram_panel = HistogramPanel(self.state)
        self.value_grid = ValueGrid(self.state)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.histogram_panel, "Histogram")
        self.tabs.addTab(self.value_grid, "Values")

        center = QSplitter(Qt.Orientation.Vertical)
        center.addWidget(self.param_panel)
        center.addWidget(self.tabs)
        center.setSizes([430, 400])
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(self.tree_panel)
        main.addWidget(center)
        main.setStretchFactor(1, 1)
        main.setSizes([520, 1080])
        self.setCentralWidget(main)

        self.tied_panel = TiedGroupsPanel(self.state)
        self.diagnostics_panel = DiagnosticsPanel(self.state)
        self.tied_dock = self.add_dock(self.tied_panel, "Tied groups")
        self.diagnostics_dock = self.add_dock(self.diagnostics_panel, "Diagnostics")
        self.init_panel = InitPanel(self.state)
        self.init_dock = self.add_dock(self.init_panel, "Initialize")
        self.tabifyDockWidget(self.diagnostics_dock, self.init_dock)
        self.diagnostics_dock.raise_()
        self.init_panel.theoryChanged.connect(self.histogram_panel.set_theory)
        self.backward_panel = BackwardPanel(self.state)
        self.backward_dock = self.add_dock(self.backward_panel, "Backward", Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resizeDocks([self.tied_dock], [330], Qt.Orientation.Horizontal)
        self.resizeDocks([self.tied_dock, self.diagnostics_dock], [180, 500], Qt.Orientation.Vertical)
        # The table and plots stay the main view; the Backward dock starts low and can be dragged up.
        self.resizeDocks([self.backward_dock], [300], Qt.Orientation.Vertical)

        self._build_status_bar()
        self._build_menus()

        self.state.sessionChanged.connect(self._on_session)
        self.state.errorOccurred.connect(self.show_error)
        self.state.moduleSelected.connect(lambda _m: self._update_selection_label())
        self.state.tensorSelected.connect(lambda _t: self._update_selection_label())
        self.statistics.started.connect(self._on_stats_started)
        self.statistics.progress.connect(self._on_stats_progress)
        self.statistics.done.connect(self._on_stats_done)
        self._hooked_stack: object | None = None
        self._on_session()

    # --- building ------------------------------------------------------------------------------
    def add_dock(
        self,
        widget: QWidget,
        title: str,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
    ) -> QDockWidget:
        """Place a panel in a dock (other panels use this too) and list it in the View menu."""
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        if hasattr(self, "view_menu"):
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def add_tab(self, widget: QWidget, title: str) -> int:
        """Add a panel as a tab beside Histogram and Values."""
        return self.tabs.addTab(widget, title)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.selection_label = QLabel()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setFormat("statistics %p%")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop computing statistics (what is done stays)")
        self.cancel_button.clicked.connect(self.statistics.cancel)
        bar.addWidget(self.selection_label, 1)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        self.progress_bar.hide()
        self.cancel_button.hide()

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_action = file_menu.addAction("&Open file…")
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self.open_file_dialog)
        self.demo_menu = file_menu.addMenu("Open &demo")
        for name, demo in DEMOS.items():
            action = self.demo_menu.addAction(f"demo:{name}")
            action.setToolTip(demo.description)
            action.setStatusTip(demo.description)
            action.triggered.connect(lambda _checked=False, n=name: self.open_source(f"demo:{n}"))
        self.recent_menu = file_menu.addMenu("&Recent files")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        self.files_actions = FilesActions(self.state, self, interactive=self.interactive)
        self.files_actions.install(file_menu)  # Export…, Load weights…, Diff against…
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        self.file_menu = file_menu

        edit_menu = self.menuBar().addMenu("&Edit")
        self.undo_action = QAction("&Undo", self)
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.undo_action.triggered.connect(self.undo)
        self.redo_action = QAction("&Redo", self)
        self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)
        self.redo_action.triggered.connect(self.redo)
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.param_panel.copy_action)
        self.edit_menu = edit_menu

        self.view_menu = self.menuBar().addMenu("&View")
        for dock in self.findChildren(QDockWidget):  # every panel placed so far; later ones add themselves
            self.view_menu.addAction(dock.toggleViewAction())
        self.view_menu.addSeparator()
        log_action = self.view_menu.addAction("Histogram: log y")
        log_action.setCheckable(True)
        log_action.toggled.connect(self.histogram_panel.view.log_y.setChecked)
        self.histogram_panel.view.log_y.toggled.connect(log_action.setChecked)
        expand = self.view_menu.addAction("Expand module tree")
        expand.triggered.connect(self.tree_panel.view.expandAll)
        collapse = self.view_menu.addAction("Collapse module tree")
        collapse.triggered.connect(lambda: self.tree_panel.view.expandToDepth(0))

    # --- opening -------------------------------------------------------------------------------
    def open_source(self, spec: str, *, trust: bool = False, weights: str | None = None) -> bool:
        """Open ``spec`` (errors are shown, the current model stays). True on success."""
        if not self.maybe_save():
            return False
        self.statistics.cancel()
        ask = (lambda error: confirm_trust(self, error)) if self.interactive else None
        ok = open_with_consent(self.state, spec, trust=trust, weights=weights, ask=ask)
        if ok and not spec.startswith("demo:"):
            add_recent_file(spec)
        return ok

    def open_model(self, opened: OpenedModel) -> None:
        self.statistics.cancel()
        self.state.open_model(opened)

    def open_path(self, path: Path, name: str | None = None) -> bool:
        """Open a file; for a ``.py`` file ask which model in it (when there is a choice)."""
        if path.suffix == ".py" and name is None:
            candidates = python_candidates(path)
            if len(candidates) > 1 and self.interactive:
                name, ok = QInputDialog.getItem(self, "Open Python file", f"Model in {path.name}:", candidates, 0, False)
                if not ok:
                    return False
        return self.open_source(spec_for_path(path, name))

    def open_file_dialog(self) -> None:
        start = str(QSettings().value("lastFolder", str(Path.home())))
        path, _ = QFileDialog.getOpenFileName(self, "Open model or checkpoint", start, FILE_FILTER)
        if path:
            QSettings().setValue("lastFolder", str(Path(path).parent))
            self.open_path(Path(path))

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = recent_files()
        for spec in files:
            action = self.recent_menu.addAction(spec)
            action.triggered.connect(lambda _checked=False, s=spec: self.open_source(s))
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list").triggered.connect(clear_recent_files)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        files = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_path(files[0])

    # --- state -> window -------------------------------------------------------------------------
    def _on_session(self) -> None:
        if not self.state.has_session:
            self.setWindowTitle("paramscope")
            self._update_undo()
            return
        stack = self.state.session.stack
        if self._hooked_stack is not stack:
            stack.add_listener(self._update_undo)
            self._hooked_stack = stack
        self._update_undo()
        self._update_selection_label()

    def _update_undo(self) -> None:
        session = self.state.session if self.state.has_session else None
        stack = session.stack if session is not None else None
        self.undo_action.setEnabled(bool(stack and stack.can_undo))
        self.redo_action.setEnabled(bool(stack and stack.can_redo))
        self.undo_action.setText(f"&Undo {stack.undo_text}" if stack and stack.can_undo else "&Undo")
        self.redo_action.setText(f"&Redo {stack.redo_text}" if stack and stack.can_redo else "&Redo")
        if session is not None:
            self.setWindowTitle(f"{session.opened.title}[*] — paramscope")
            self.setWindowModified(session.modified)

    def undo(self) -> None:
        if self.state.has_session:
            self._guarded(self.state.session.undo, "Undo")

    def redo(self) -> None:
        if self.state.has_session:
            self._guarded(self.state.session.redo, "Redo")

    def _guarded(self, action, what: str) -> None:
        try:
            action()
        except Exception as exc:  # a failed undo must be a message, not a crash
            self.state.errorOccurred.emit(f"{what} failed: {type(exc).__name__}: {exc}")

    def _update_selection_label(self) -> None:
        if not self.state.has_session:
            self.selection_label.setText("")
            return
        report = self.state.session.report
        module = self.state.selected_module
        info = report.modules.get(module)
        parts = [f"module: {module or '(model)'} ({info.type_name})" if info else ""]
        if self.state.selected_tensor:
            tensor = report.tensor(self.state.selected_tensor)
            parts.append(f"tensor: {tensor.name} {tensor.shape_text()} {tensor.dtype}")
        parts.append(f"{report.unique_params:,} parameters ({len(report.parameters)} tensors)")
        self.selection_label.setText("   ·   ".join(p for p in parts if p))

    def _on_stats_started(self) -> None:
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.cancel_button.show()

    def _on_stats_progress(self, fraction: float, message: str) -> None:
        self.progress_bar.setValue(int(fraction * 1000))
        self.progress_bar.setToolTip(message)

    def _on_stats_done(self) -> None:
        if not self.statistics.is_running:
            self.progress_bar.hide()
            self.cancel_button.hide()

    def show_error(self, message: str) -> None:
        """Tell the user; never raise. Non-interactive windows only emit errorShown."""
        self.errorShown.emit(message)
        if self.interactive:
            box = QMessageBox(QMessageBox.Icon.Warning, "paramscope", message, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()  # window-modal, does not block the caller

    # --- closing -----------------------------------------------------------------------------
    def maybe_save(self) -> bool:
        """Ask about unsaved edits. True: go on (discarded or saved), False: the user cancelled.

        Hook for the export feature: offer Save here once the state_dict can be written.
        """
        if not self.state.has_session or not self.state.session.modified or not self.interactive:
            return True
        answer = QMessageBox.question(
            self,
            "Unsaved changes",
            f"{self.state.session.opened.title} has changes that were not exported. Save them as a state_dict?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            path = self.files_actions.ask_save_path()
            return path is not None and self.files_actions.save_now(path)
        return answer == QMessageBox.StandardButton.Discard

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.maybe_save():
            event.ignore()
            return
        self.statistics.cancel_and_wait()
        self.backward_panel.worker.cancel_and_wait()
        event.accept()
        self.closed.emit()
