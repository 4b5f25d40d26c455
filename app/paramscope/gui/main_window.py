"""The main window: wires the panels around one AppState. It holds no model state itself."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QWidget,
)

from paramscope.core.demos import DEMOS
from paramscope.core.errors import ParamscopeError, shown
from paramscope.core.report import ModelReport
from paramscope.core.sources import OpenedModel
from paramscope.gui import plot_export, settings, theme
from paramscope.gui.about import show_about
from paramscope.gui.backward_panel import BackwardPanel
from paramscope.gui.checkpoint_panel import CheckpointPanel
from paramscope.gui.context_menus import RowMenus
from paramscope.gui.diagnostics_panel import DiagnosticsPanel
from paramscope.gui.file_watch import FileWatch
from paramscope.gui.files_actions import FilesActions, confirm_trust, open_with_consent
from paramscope.gui.heatmap_view import HeatmapView
from paramscope.gui.histogram_panel import HistogramPanel
from paramscope.gui.init_panel import InitPanel
from paramscope.gui.opening import (
    FILE_FILTER,
    SourceOpener,
    add_recent_file,
    clear_recent_files,
    displayed,
    opens_in_background,
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

if TYPE_CHECKING:
    from paramscope.core.files.safety import UntrustedFileError
    from paramscope.core.session import Session

# The statistics bar repaints at most this often (each repaint of a big window costs ~25 ms).
PROGRESS_REPAINT_MS = 150
DEFAULT_SIZE = (1600, 1000)  # a fresh window where the screen has room; smaller screens: see fit_to_screen
NARROW_WIDTH = 1200
TOOL_DOCK_WIDTH = 310  # the Initialize and Backward panels need ~290 px; a little to spare
# Room left around a fresh window on a small screen for the title bar and frame the window manager adds.
FRAME_ALLOWANCE = (16, 48)


def first_look_tensor(report: ModelReport) -> str | None:
    """The largest weight of the first layer: what a user looks at first.

    The first layer is the first module owning a matrix (a LayerNorm's weight of ones in
    front of it would show a single bar); without matrices, the first module with parameters.
    """
    shown = [info for info in report.parameters.values() if info.numel > 0]  # lazy: nothing to plot
    if not shown:
        return None
    first = next((i for i in shown if i.shape is not None and len(i.shape) >= 2), shown[0])
    return max((i for i in shown if i.module == first.module), key=lambda i: i.numel).name


class MainWindow(QMainWindow):
    """Tree | parameter table over [Histogram, Values] tabs | docks for ties and diagnostics.

    Signals:
        errorShown(str): an error message was shown to the user (tests and screenshots listen).
        closed(): the window closed (after the close was confirmed).
    """

    errorShown = Signal(str)
    closed = Signal()

    def __init__(self, state: AppState | None = None, *, interactive: bool = True, restore: bool = False) -> None:
        super().__init__()
        self.state = state if state is not None else AppState(parent=self)
        self.interactive = interactive  # False: errors go to errorShown only (screenshots, tests)
        self.remember = restore  # True: geometry and docks come from QSettings and go back on close
        self.setAcceptDrops(True)
        self.resize(*DEFAULT_SIZE)
        self.statistics = StatisticsWorker(self.state, self)
        self.opener = SourceOpener(self.state, self)  # data files are parsed off the GUI thread
        self.opened = self.opener.opened  # opened(bool): an open_source call ended
        self.opener.aboutToSwap.connect(self.statistics.cancel)
        self.opener.started.connect(self._on_opening)
        self.opener.opened.connect(self._on_opened)

        self.tree_panel = ModuleTreePanel(self.state)
        self.param_panel = ParameterPanel(self.state)
        self.histogram_panel = HistogramPanel(self.state)
        self.heatmap_view = HeatmapView(self.state)
        self.value_grid = ValueGrid(self.state)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("plotTabs")
        self.tabs.addTab(self.histogram_panel, "Histogram")
        self.tabs.addTab(self.heatmap_view, "Heatmap")
        self.tabs.addTab(self.value_grid, "Values")

        # Centre: the table over the plots. Left: tree over ties/diagnostics. Right: the tool panels.
        self.center = QSplitter(Qt.Orientation.Vertical)
        self.center.setObjectName("centerSplitter")
        self.center.addWidget(self.param_panel)
        self.center.addWidget(self.tabs)
        self.center.setStretchFactor(1, 1)
        self.center.setSizes([380, 520])
        self.setCentralWidget(self.center)
        self.setDockNestingEnabled(True)

        left = Qt.DockWidgetArea.LeftDockWidgetArea
        self.tree_dock = self.add_dock(self.tree_panel, "Modules", left)
        self.tied_panel = TiedGroupsPanel(self.state)
        self.diagnostics_panel = DiagnosticsPanel(self.state)
        self.tied_dock = self.add_dock(self.tied_panel, "Tied groups", left)
        self.diagnostics_dock = self.add_dock(self.diagnostics_panel, "Diagnostics", left)
        self.splitDockWidget(self.tree_dock, self.tied_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.tied_dock, self.diagnostics_dock)
        self.checkpoint_panel = CheckpointPanel(self.state)  # notes, epoch, optimizer state, weight set
        self.checkpoint_dock = self.add_dock(self.checkpoint_panel, "Checkpoint", left)
        self.tabifyDockWidget(self.diagnostics_dock, self.checkpoint_dock)
        self.checkpoint_panel.entryChosen.connect(lambda entry: self.open_source(self.state.session.opened.source, entry=entry))
        self.diagnostics_dock.raise_()

        # Long forms scroll inside their dock rather than being squashed.
        self.init_panel = InitPanel(self.state)
        self.init_dock = self.add_dock(self.init_panel, "Initialize", scroll=True)
        self.init_panel.theoryChanged.connect(self.histogram_panel.set_theory)
        self.init_panel.previewReady.connect(self._show_preview)
        self.backward_panel = BackwardPanel(self.state)
        self.backward_panel.signal_plot.setMinimumHeight(240)
        self.backward_panel.table.setMinimumHeight(150)
        self.backward_dock = self.add_dock(self.backward_panel, "Backward", scroll=True)
        self.tabifyDockWidget(self.init_dock, self.backward_dock)
        self.init_dock.raise_()
        self._docks_fitted = False

        self._build_status_bar()
        self._build_menus()

        self.state.sessionChanged.connect(self._on_session)
        self.state.errorOccurred.connect(self.show_error)
        self.state.noticeOccurred.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self.state.moduleSelected.connect(lambda _m: self._update_selection_label())
        self.state.tensorSelected.connect(lambda _t: self._update_selection_label())
        self.statistics.started.connect(self._on_stats_started)
        self.statistics.progress.connect(self._on_stats_progress)
        self.statistics.done.connect(self._on_stats_done)
        self.state.busyChanged.connect(self.set_running)
        self.files_actions.worker.started.connect(lambda what: self.set_running(True, "files", what))
        # The model is in use while a file task reads it: the state refuses edits until done.
        self.files_actions.worker.started.connect(lambda _what: self.state.set_busy(True, "files"))
        self.files_actions.worker.done.connect(lambda: self.state.set_busy(False, "files"))
        self.files_actions.worker.done.connect(lambda: self.set_running(False, "files"))
        self.row_menus = RowMenus(self)
        self._hooked_stack: object | None = None
        self._on_session()
        self._tooltips()
        if restore:
            self.restore_settings()

    # --- building ------------------------------------------------------------------------------
    def add_dock(
        self,
        widget: QWidget,
        title: str,
        area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
        *,
        scroll: bool = False,
    ) -> QDockWidget:
        """Place a panel in a dock (other panels use this too) and list it in the View menu.

        With ``scroll`` the panel sits in a scroll area: a small window scrolls it instead of
        squashing its plots and tables below their minimum size.
        """
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_"))
        if scroll:
            area_widget = QScrollArea()
            area_widget.setObjectName(f"{dock.objectName()}_scroll")
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QFrame.Shape.NoFrame)
            area_widget.setWidget(widget)
            dock.setWidget(area_widget)
        else:
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        if hasattr(self, "view_menu"):
            self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def fit_to_screen(self) -> None:
        """Size a fresh window to DEFAULT_SIZE or the screen's free area, whichever is smaller, and
        place it inside that area (a 1600x1000 window on a 1280x800 screen hid its right dock).
        """
        screen = self.screen() or QGuiApplication.primaryScreen()
        if screen is None:
            return
        area = screen.availableGeometry()
        width = min(DEFAULT_SIZE[0], area.width() - FRAME_ALLOWANCE[0])
        height = min(DEFAULT_SIZE[1], area.height() - FRAME_ALLOWANCE[1])
        self.resize(width, height)
        self.move(area.x() + (area.width() - width - FRAME_ALLOWANCE[0]) // 2, area.y() + (area.height() - height - FRAME_ALLOWANCE[1]) // 2)

    def raise_dock(self, dock: QDockWidget) -> None:
        """Show ``dock`` (even if the user closed it) and bring its tab to the front."""
        dock.show()
        dock.raise_()

    def fit_docks(self) -> None:
        """Share the window's width: tree ~27%, tool panels ~31%, the rest for table and plots."""
        width, height = max(self.width(), 800), max(self.height(), 600)
        # A narrow window gives the tree less, so the plot keeps a usable width (~350 px at 1024).
        tree = int(width * (0.27 if width >= NARROW_WIDTH else 0.21))
        self.resizeDocks([self.tree_dock], [tree], Qt.Orientation.Horizontal)
        self.resizeDocks([self.init_dock], [max(int(width * 0.31), TOOL_DOCK_WIDTH)], Qt.Orientation.Horizontal)
        self.resizeDocks([self.tree_dock, self.tied_dock], [int(height * 0.6), int(height * 0.3)], Qt.Orientation.Vertical)
        self.center.setSizes([int(height * 0.4), int(height * 0.5)])

    def restore_settings(self) -> bool:
        """Geometry and dock layout from the last session (QSettings); saved again on close."""
        self.remember = True
        restored = settings.restore_window(self)
        if restored:
            self._docks_fitted = True  # the user's own dock sizes win over the defaults
        return restored

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._docks_fitted:
            self._docks_fitted = True
            self.fit_docks()

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.selection_label = QLabel()
        self.running_label = QLabel()
        self.running_label.setObjectName("runningLabel")
        self._running: dict[str, str] = {}
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setMaximumWidth(220)
        self.progress_bar.setFormat("statistics %p%")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop computing statistics (what is done stays)")
        self.cancel_button.clicked.connect(self.statistics.cancel)
        bar.addWidget(self.selection_label, 1)
        bar.addPermanentWidget(self.running_label)
        bar.addPermanentWidget(self.progress_bar)
        bar.addPermanentWidget(self.cancel_button)
        self.progress_bar.hide()
        self._pending_progress = (0, "")
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(PROGRESS_REPAINT_MS)
        self._progress_timer.timeout.connect(self._show_progress)
        self.cancel_button.hide()
        self.changed_label = QLabel()
        self.changed_label.setObjectName("fileChangedLabel")
        self.reopen_button = QPushButton("Reopen")
        self.reopen_button.setToolTip("Open the new version of the file (asks about unsaved edits first)")
        self.reopen_button.clicked.connect(self.reopen)
        bar.addPermanentWidget(self.changed_label)
        bar.addPermanentWidget(self.reopen_button)
        self.changed_label.hide()
        self.reopen_button.hide()
        self.file_watch = FileWatch(self)
        self.file_watch.changed.connect(self._on_file_changed)

    def _on_file_changed(self, path: str) -> None:
        """The opened file was saved over: the values in memory stay; offer the new version."""
        edits = " your edits are kept;" if self.state.has_session and self.state.session.modified else ""
        self.changed_label.setText(f"{Path(path).name} changed on disk since it was opened;{edits} reopen to see it")
        self.changed_label.setToolTip(path)
        self.changed_label.show()
        self.reopen_button.show()

    def reopen(self) -> bool:
        """Open the current source again (after asking about unsaved edits)."""
        if not self.state.has_session:
            return False
        return self.open_source(self.state.session.opened.source)

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
        for action in file_menu.actions():
            if action.text().replace("&", "").startswith("Export state_dict"):
                action.setShortcuts([QKeySequence(QKeySequence.StandardKey.Save), QKeySequence("Ctrl+E")])
                self.export_action = action
        file_menu.addSeparator()
        self.export_plot_action = file_menu.addAction("Export &plot as PNG/SVG…")
        self.export_plot_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.export_plot_action.triggered.connect(self.export_plot_dialog)
        self.export_bins_action = file_menu.addAction("Export histogram &bins as CSV…")
        self.export_bins_action.triggered.connect(self.export_bins_dialog)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        # Some platforms (offscreen, Windows) bind no key to Quit: Ctrl+Q then, as most desktop apps.
        quit_action.setShortcuts(QKeySequence.keyBindings(QKeySequence.StandardKey.Quit) or [QKeySequence("Ctrl+Q")])
        quit_action.triggered.connect(self.close)
        self.quit_action = quit_action
        self.open_action = open_action
        self.file_menu = file_menu

        edit_menu = self.menuBar().addMenu("&Edit")
        self.undo_action = QAction("&Undo", self)
        self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
        self.undo_action.triggered.connect(self.undo)
        self.redo_action = QAction("&Redo", self)
        # Ctrl+Y as well as the platform's Redo (Ctrl+Shift+Z on Linux), as the README says.
        redo_keys = QKeySequence.keyBindings(QKeySequence.StandardKey.Redo)
        self.redo_action.setShortcuts(redo_keys + [k for k in [QKeySequence("Ctrl+Y")] if k not in redo_keys])
        self.redo_action.triggered.connect(self.redo)
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        edit_menu.addSeparator()
        edit_menu.addAction(self.param_panel.copy_action)
        edit_menu.addAction("Copy table as &CSV").triggered.connect(lambda: self.param_panel.copy_table(","))
        edit_menu.addAction("Copy table as &TSV").triggered.connect(lambda: self.param_panel.copy_table("\t"))
        edit_menu.addSeparator()
        self.find_action = edit_menu.addAction("&Find parameter…")
        self.find_action.setShortcut(QKeySequence.StandardKey.Find)
        self.find_action.triggered.connect(self.focus_filter)
        self.find_module_action = edit_menu.addAction("Find &module…")
        self.find_module_action.setShortcut(QKeySequence("Ctrl+Shift+F"))
        self.find_module_action.triggered.connect(self.focus_module_filter)
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
        self.view_menu.addSeparator()
        self._build_theme_menu()
        self.view_menu.addAction("Reset layout").triggered.connect(self.reset_layout)

        help_menu = self.menuBar().addMenu("&Help")
        self.about_action = help_menu.addAction("&About paramscope")
        self.about_action.triggered.connect(lambda: show_about(self))
        self.help_menu = help_menu

    def _build_theme_menu(self) -> None:
        """View > Theme: system, light or dark, for widgets and plots alike (remembered)."""
        menu = self.view_menu.addMenu("&Theme")
        group = QActionGroup(self)
        group.setExclusive(True)
        self.theme_actions: dict[str, QAction] = {}
        active = theme.current_theme()
        for name, text in theme.THEMES.items():
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(name == active)
            action.triggered.connect(lambda _checked=False, n=name: theme.choose_theme(n))
            group.addAction(action)
            self.theme_actions[name] = action

    def _tooltips(self) -> None:
        self.tabs.setTabToolTip(0, "Histogram of the selected tensor (values or gradient), before/after a change")
        self.tabs.setTabToolTip(1, "Heatmap of the selected weight (2-D; more dimensions flattened to rows × rest)")
        self.tabs.setTabToolTip(2, "Values of the selected tensor, as print(param) shows them")
        self.tree_panel.filter_box.setToolTip("Show modules whose name or type contains this text (Ctrl+Shift+F)")
        self.param_panel.filter_box.setToolTip("Show tensors whose name, alias, dtype or shape contains this text (Ctrl+F)")

    # --- conveniences --------------------------------------------------------------------------
    def focus_filter(self) -> None:
        """Find: put the cursor in the parameter filter box (its text selected)."""
        self.param_panel.filter_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.param_panel.filter_box.selectAll()

    def focus_module_filter(self) -> None:
        self.raise_dock(self.tree_dock)
        self.tree_panel.filter_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.tree_panel.filter_box.selectAll()

    def reset_layout(self) -> None:
        for dock in (self.tree_dock, self.tied_dock, self.diagnostics_dock, self.init_dock, self.backward_dock):
            dock.setFloating(False)
            dock.show()
        left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
        for dock, area in ((self.tree_dock, left), (self.tied_dock, left), (self.init_dock, right), (self.backward_dock, right)):
            self.addDockWidget(area, dock)
        self.splitDockWidget(self.tree_dock, self.tied_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.tied_dock, self.diagnostics_dock)
        self.tabifyDockWidget(self.init_dock, self.backward_dock)
        self.init_dock.raise_()
        self.fit_docks()

    def current_plot(self):
        """The pyqtgraph PlotItem on the front plot tab (Histogram or Heatmap), or None."""
        widget = self.tabs.currentWidget()
        if widget is self.histogram_panel:
            return self.histogram_panel.view.plot
        if widget is self.heatmap_view:
            return self.heatmap_view.plot
        return None

    def export_plot(self, path: str | Path) -> Path | None:
        """Write the front plot (the histogram when Values is in front) as PNG or SVG."""
        plot = self.current_plot() or self.histogram_panel.view.plot
        try:
            written = plot_export.export_plot(plot, path)
        except (ParamscopeError, OSError) as exc:
            self.state.errorOccurred.emit(f"{path}: could not export the plot: {exc}")
            return None
        self.statusBar().showMessage(f"Plot written to {written}", 5000)
        return written

    def export_bins(self, path: str | Path) -> Path | None:
        """Write the bins of the histogram shown (values or gradient) as CSV."""
        histogram = self.histogram_panel.view.current
        if histogram is None:
            self.state.errorOccurred.emit("No histogram to export: select a tensor first.")
            return None
        try:
            written = plot_export.export_histogram_csv(histogram, path)
        except (ParamscopeError, OSError) as exc:
            self.state.errorOccurred.emit(f"{path}: could not export the bins: {exc}")
            return None
        self.statusBar().showMessage(f"Bins written to {written}", 5000)
        return written

    def _default_export_name(self, suffix: str) -> str:
        name = (self.state.selected_tensor or "plot") if self.state.has_session else "plot"
        kind = "heatmap" if self.tabs.currentWidget() is self.heatmap_view else "histogram"
        folder = Path(str(QSettings().value("lastExportFolder", str(Path.home()))))
        return str(folder / f"{name}-{kind}{suffix}")

    def export_plot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export plot", self._default_export_name(".png"), plot_export.PLOT_FILTER
        )
        if path:
            QSettings().setValue("lastExportFolder", str(Path(path).parent))
            self.export_plot(path)

    def export_bins_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export histogram bins", self._default_export_name(".csv"), plot_export.CSV_FILTER
        )
        if path:
            QSettings().setValue("lastExportFolder", str(Path(path).parent))
            self.export_bins(path)

    def set_running(self, busy: bool, what: str, text: str | None = None) -> None:
        """Show in the status bar what long work is going on (several at once are joined)."""
        if busy:
            self._running[what] = text or what
        else:
            self._running.pop(what, None)
        self.running_label.setText(("running: " + ", ".join(self._running.values())) if self._running else "")

    # --- opening -------------------------------------------------------------------------------
    def open_source(
        self,
        spec: str,
        *,
        trust: bool = False,
        weights: str | None = None,
        ahead: Future[Session | UntrustedFileError] | None = None,
        **options: str | None,
    ) -> bool:
        """Open ``spec`` (errors are shown, the current model stays); ``opened(bool)`` tells the end.

        ``options``: ``strip_prefix``, ``entry``, ``weights_entry`` as ``open_source`` takes them;
        ``ahead``: the same open started before the window existed (:func:`open_ahead`).

        Data files open in a worker (see :class:`SourceOpener`): True means opening started.
        Demos and Python code open here at once: True means opened. False: refused or failed.
        """
        if not self.maybe_save():
            return False
        ask = (lambda error: confirm_trust(self, error)) if self.interactive else None
        if opens_in_background(spec):
            self.opener.open(spec, trust=trust, weights=weights, ask=ask, ahead=ahead, **options)
            return True
        self.opener.cancel_and_wait()  # an older file still opening must not replace this one
        self.statistics.cancel()
        ok = open_with_consent(self.state, spec, trust=trust, weights=weights, ask=ask, **options)
        if ok and not spec.startswith("demo:"):
            add_recent_file(spec)
        self.opener.opened.emit(ok)
        return ok

    def _on_opening(self, spec: str) -> None:
        self.statusBar().showMessage(f"Opening {displayed(spec)}…")
        self.set_running(True, "opening", f"opening {shown(Path(displayed(spec)).name)}")

    def _on_opened(self, _ok: bool) -> None:
        if not self.opener.is_running:
            self.statusBar().clearMessage()
            self.set_running(False, "opening")

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
        self.changed_label.hide()
        self.reopen_button.hide()
        self.file_watch.watch(self.state.session.opened.path if self.state.has_session else None)
        if not self.state.has_session:
            self.setWindowTitle("paramscope")
            self._update_undo()
            return
        stack = self.state.session.stack
        if self._hooked_stack is not stack:  # another model: its messages start afresh
            stack.add_listener(self._update_undo)
            self._hooked_stack = stack
            self.statusBar().clearMessage()  # a message about the previous model does not stay
        self._update_undo()
        if self.state.selected_tensor is None:  # something to see at once, never an empty plot
            first = first_look_tensor(self.state.session.report)
            if first is not None:
                self.state.select_tensor(first)
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
        if self.state.has_session and not self._waits_for_staging("Undo"):
            self._guarded(self.state.session.undo, "Undo")

    def redo(self) -> None:
        if self.state.has_session and not self._waits_for_staging("Redo"):
            self._guarded(self.state.session.redo, "Redo")

    def _show_preview(self, name: str, after: object, theory: object) -> None:
        """Preview draws in the main histogram, brought to the front."""
        self.histogram_panel.show_preview(name, after, theory)  # type: ignore[arg-type]
        self.tabs.setCurrentWidget(self.histogram_panel)

    def _waits_for_staging(self, what: str) -> bool:
        # A large edit being computed replaces the current values when done: they must not move.
        return self.init_panel.is_staging and self.state.refuse_if_busy(what)

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
        self.set_running(True, "statistics")
        self.progress_bar.setValue(0)
        self.progress_bar.show()
        self.cancel_button.show()

    def _on_stats_progress(self, fraction: float, message: str) -> None:
        # QProgressBar.setValue repaints at once (tens of ms in a big window): the bar shows the
        # latest value at most every PROGRESS_REPAINT_MS.
        self._pending_progress = (int(fraction * 100), message)
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _show_progress(self) -> None:
        percent, message = self._pending_progress
        if percent != self.progress_bar.value():
            self.progress_bar.setValue(percent)
        self.progress_bar.setToolTip(message)

    def _on_stats_done(self) -> None:
        if not self.statistics.is_running:
            self.set_running(False, "statistics")
            self.progress_bar.hide()
            self.cancel_button.hide()

    def _shown_inline(self, message: str) -> bool:
        """Whether a visible panel already shows ``message`` beside its controls."""
        for panel, dock in ((self.init_panel, self.init_dock), (self.backward_panel, self.backward_dock)):
            if getattr(panel, "inline_error", None) == message and not dock.visibleRegion().isEmpty():
                panel.inline_error = None
                return True
        return False

    def show_error(self, message: str) -> None:
        """Tell the user once; never raise. Non-interactive windows only emit errorShown.

        An error a visible panel shows beside its controls is not repeated in a dialog; every
        error also stays in the status bar as one line.
        """
        self.errorShown.emit(message)
        self.statusBar().showMessage(message, 30000)
        if self.interactive and not self._shown_inline(message):
            box = QMessageBox(QMessageBox.Icon.Warning, "paramscope", message, QMessageBox.StandardButton.Ok, self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()  # window-modal, does not block the caller

    # --- closing -----------------------------------------------------------------------------
    def maybe_save(self) -> bool:
        """Ask about unsaved edits (Save exports a state_dict). True: go on, False: cancelled."""
        if not self.state.has_session or not self.state.session.modified or not self.interactive:
            return True
        if self.state.session.opened.kind == "live":
            return self._close_live()
        answer = QMessageBox.question(
            self,
            "Unsaved changes",
            f"{self.state.session.opened.title} has changes that were not exported. Save them as a state_dict?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self._save_before_closing()
        return answer == QMessageBox.StandardButton.Discard

    def _close_live(self) -> bool:
        """explore(): the edits are already on the caller's model; say so, offer a state_dict too."""
        count = len(self.state.session.stack.history)
        answer = QMessageBox.question(
            self,
            "Close paramscope",
            f"The {count} edit{'s' if count != 1 else ''} stay on the live model in your Python session "
            "(undo ends when this window closes). Also save a copy as a state_dict?",
            QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Close | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Close,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self._save_before_closing()
        return answer == QMessageBox.StandardButton.Close

    def _save_before_closing(self) -> bool:
        """Ask where, then export the state_dict; True when it was written."""
        path = self.files_actions.ask_save_path()
        return path is not None and self.files_actions.save_now(path)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.maybe_save():
            event.ignore()
            return
        self.opener.cancel_and_wait()
        self.statistics.cancel_and_wait()
        self.backward_panel.worker.cancel_and_wait()
        self.init_panel.worker.cancel_and_wait()  # a large edit being computed: nothing applied
        self.init_panel.preview_worker.cancel_and_wait()
        self.histogram_panel.cancel_and_wait()
        # an export still running is cancelled (its temporary file removed) before the window goes
        self.files_actions.worker.cancel_and_wait()
        if self.remember:
            settings.save_window(self)
        event.accept()
        self.closed.emit()
