"""The main window: wires the panels around one AppState. It holds no model state itself.

Its menus (:mod:`~paramscope.gui.app.window_menus`), status bar (:mod:`~paramscope.gui.app.window_status`),
geometry (:mod:`~paramscope.gui.app.window_layout`) and plot exports (:mod:`~paramscope.gui.app.window_exports`)
are built in modules of their own; this one places the panels and connects them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QFrame,
    QInputDialog,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QWidget,
)

from paramscope.core.errors import shown
from paramscope.core.sources.sources import OpenedModel
from paramscope.gui.app import settings, window_closing, window_exports, window_layout
from paramscope.gui.app.context_menus import RowMenus
from paramscope.gui.app.file_watch import FileWatch
from paramscope.gui.app.first_look import first_look_tensor
from paramscope.gui.app.init_tools import InitTools
from paramscope.gui.app.opening import (
    FILE_FILTER,
    Ahead,
    SourceOpener,
    add_recent_file,
    displayed,
    opens_in_background,
    python_candidates,
    spec_for_path,
)
from paramscope.gui.app.statistics_worker import StatisticsWorker
from paramscope.gui.app.window_layout import DEFAULT_SIZE
from paramscope.gui.app.window_menus import build_menus
from paramscope.gui.app.window_status import WindowStatus
from paramscope.gui.consent import confirm_trust, open_with_consent
from paramscope.gui.panels.backward_panel import BackwardPanel
from paramscope.gui.panels.checkpoint_panel import CheckpointPanel
from paramscope.gui.panels.diagnostics_panel import DiagnosticsPanel
from paramscope.gui.panels.histogram_panel import HistogramPanel
from paramscope.gui.panels.init_panel import InitPanel
from paramscope.gui.panels.param_panel import ParameterPanel
from paramscope.gui.panels.series_view import SeriesView
from paramscope.gui.panels.tied_panel import TiedGroupsPanel
from paramscope.gui.panels.tree_panel import ModuleTreePanel
from paramscope.gui.panels.value_grid import ValueGrid
from paramscope.gui.plots.heatmap_view import HeatmapView
from paramscope.gui.plots.spectrum_view import SpectrumView
from paramscope.gui.state import AppState


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
        self._build_center()
        self._build_docks()
        self._build_status_bar()
        build_menus(self)
        self.init_tools = InitTools(self)  # Initialize menu: presets, schemes compared on the signal
        self._wire()
        self.row_menus = RowMenus(self)
        self._hooked_stack: object | None = None
        self._on_session()
        self._tooltips()
        if restore:
            self.restore_settings()

    def _build_center(self) -> None:
        """Centre: the parameter table over the plot tabs (Histogram, Heatmap, Values)."""
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
        self.spectrum_view = SpectrumView(self.state)
        self.tabs.addTab(self.spectrum_view, "Spectrum")
        self.center = QSplitter(Qt.Orientation.Vertical)
        self.center.setObjectName("centerSplitter")
        self.center.addWidget(self.param_panel)
        self.center.addWidget(self.tabs)
        self.center.setStretchFactor(1, 1)
        self.center.setSizes([380, 520])
        self.setCentralWidget(self.center)
        self.setDockNestingEnabled(True)

    def _build_docks(self) -> None:
        """Left: the tree over ties, diagnostics and checkpoint. Right: the tool panels."""
        left = Qt.DockWidgetArea.LeftDockWidgetArea
        self.tree_dock = self.add_dock(self.tree_panel, "Modules", left)
        self.tied_panel = TiedGroupsPanel(self.state)
        self.diagnostics_panel = DiagnosticsPanel(self.state)
        self.tied_dock = self.add_dock(self.tied_panel, "Tied groups", left)
        self.diagnostics_dock = self.add_dock(self.diagnostics_panel, "Diagnostics", left)
        self.splitDockWidget(self.tree_dock, self.tied_dock, Qt.Orientation.Vertical)
        self.tabifyDockWidget(self.tied_dock, self.diagnostics_dock)
        self.checkpoint_panel = CheckpointPanel(self.state)  # notes, epoch, optimizer state, weight set
        self.checkpoint_dock = self.add_dock(self.checkpoint_panel, self.checkpoint_panel.windowTitle(), left)
        self.checkpoint_panel.windowTitleChanged.connect(self.checkpoint_dock.setWindowTitle)  # "(2 notes)"
        self.tabifyDockWidget(self.diagnostics_dock, self.checkpoint_dock)
        self.diagnostics_dock.raise_()
        # Long forms scroll inside their dock rather than being squashed.
        self.init_panel = InitPanel(self.state)
        self.init_dock = self.add_dock(self.init_panel, "Initialize", scroll=True)
        self.backward_panel = BackwardPanel(self.state)
        self.backward_panel.signal_plot.setMinimumHeight(240)
        self.backward_panel.table.setMinimumHeight(150)
        self.backward_dock = self.add_dock(self.backward_panel, "Backward", scroll=True)
        self.tabifyDockWidget(self.init_dock, self.backward_dock)
        self.init_dock.raise_()
        # A run's checkpoints over time: another object than the open model, and a strip of layers x
        # steps wants the window's whole width, so a dock below everything, shown when a series opens.
        self.series_view = SeriesView(self.state, interactive=self.interactive)
        self.series_dock = self.add_dock(self.series_view, "Series", Qt.DockWidgetArea.BottomDockWidgetArea)
        self.series_dock.hide()
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.series_view.opening.connect(self.show_series)
        self.series_view.openCheckpoint.connect(self.open_source)
        self._docks_fitted = False

    def _wire(self) -> None:
        self.opener.aboutToSwap.connect(self.statistics.cancel)
        self.opener.started.connect(self._on_opening)
        self.opener.opened.connect(self._on_opened)
        self.opener.progress.connect(self.status.opening.advance)
        self.checkpoint_panel.entryChosen.connect(lambda entry: self.open_source(self.state.session.opened.source, entry=entry))
        self.init_panel.theoryChanged.connect(self.histogram_panel.set_theory)
        self.init_panel.previewReady.connect(self._show_preview)
        self.state.sessionChanged.connect(self._on_session)
        self.state.errorOccurred.connect(self.show_error)
        self.state.noticeOccurred.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self.state.moduleSelected.connect(lambda _m: self.status.show_selection())
        self.state.tensorSelected.connect(lambda _t: self.status.show_selection())
        self.statistics.started.connect(self.status.stats_started)
        self.statistics.progress.connect(self.status.stats_progress)
        self.statistics.done.connect(lambda: self.status.stats_done(self.statistics.is_running))
        self.state.busyChanged.connect(self.set_running)
        files = self.files_actions.worker
        files.started.connect(lambda what: self.set_running(True, "files", what))
        # The model is in use while a file task reads it: the session refuses edits until done.
        files.started.connect(lambda _what: self.state.set_busy(True, "files"))
        files.done.connect(lambda: self.state.set_busy(False, "files"))
        files.done.connect(lambda: self.set_running(False, "files"))
        self.series_view.worker.started.connect(lambda what: self.set_running(True, "series", "series"))
        self.series_view.worker.done.connect(lambda: self.set_running(False, "series"))

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
        window_layout.fit_to_screen(self)

    def raise_dock(self, dock: QDockWidget) -> None:
        """Show ``dock`` (even if the user closed it) and bring its tab to the front."""
        dock.show()
        dock.raise_()

    def show_series(self) -> None:
        """Show the Series dock; the first time, across the window and over half its height."""
        first = self.series_dock.isHidden()
        self.raise_dock(self.series_dock)
        if first and not self.series_dock.isFloating():
            self.resizeDocks([self.series_dock], [int(self.height() * 0.55)], Qt.Orientation.Vertical)

    def fit_docks(self) -> None:
        window_layout.fit_docks(self)

    def restore_settings(self) -> bool:
        """Geometry and dock layout from the last session (QSettings); saved again on close."""
        self.remember = True
        restored = settings.restore_window(self)
        if restored:  # the user's own dock sizes win over the defaults, if the screen has room
            self._docks_fitted = True
            width = settings.saved_width()
            QTimer.singleShot(0, self, lambda: window_layout.fit_docks_if_narrower(self, width))
        return restored

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._docks_fitted:
            self._docks_fitted = True
            self.fit_docks()

    def _build_status_bar(self) -> None:
        self.status = WindowStatus(self.statusBar(), self.state)
        status = self.status  # its widgets, by the names the tests and screenshots use
        self.selection_label, self.running_label, self.progress_bar = status.selection_label, status.running_label, status.progress_bar
        self.cancel_button, self.changed_label, self.reopen_button = status.cancel_button, status.changed_label, status.reopen_button
        self.cancel_button.clicked.connect(self.statistics.cancel)
        status.opening.button.clicked.connect(self.stop_opening)
        self.reopen_button.clicked.connect(self.reopen)
        self.file_watch = FileWatch(self)
        self.file_watch.changed.connect(self.status.file_changed)

    def reopen(self) -> bool:
        """Open the current source again (after asking about unsaved edits)."""
        if not self.state.has_session:
            return False
        return self.open_source(self.state.session.opened.source)

    def _tooltips(self) -> None:
        self.tabs.setTabToolTip(0, "Histogram of the selected tensor (values or gradient), before/after a change")
        self.tabs.setTabToolTip(1, "Heatmap of the selected weight (2-D; more dimensions flattened to rows × rest)")
        self.tabs.setTabToolTip(2, "Values of the selected tensor, as print(param) shows them")
        self.tabs.setTabToolTip(3, "Singular values of the selected weight, with the Marchenko–Pastur law")
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
        window_layout.reset_layout(self)

    def current_plot(self) -> Any:
        """The pyqtgraph PlotItem on the front plot tab (Histogram or Heatmap), or None."""
        return window_exports.current_plot(self)

    def export_plot(self, path: str | Path) -> Path | None:
        """Write the front plot (the histogram when Values is in front) as PNG or SVG."""
        return window_exports.export_plot(self, path)

    def export_bins(self, path: str | Path) -> Path | None:
        """Write the bins of the histogram shown (values or gradient) as CSV."""
        return window_exports.export_bins(self, path)

    def set_running(self, busy: bool, what: str, text: str | None = None) -> None:
        """Show in the status bar what long work is going on (several at once are joined)."""
        self.status.set_running(busy, what, text)

    # --- opening -------------------------------------------------------------------------------
    def open_source(
        self,
        spec: str,
        *,
        trust: bool = False,
        weights: str | None = None,
        ahead: Ahead | None = None,
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
        self.status.opening.start()

    def _on_opened(self, _ok: bool) -> None:
        if not self.opener.is_running:
            self.statusBar().clearMessage()
            self.set_running(False, "opening")
            self.status.opening.stop()

    def stop_opening(self) -> None:
        """The status bar's Stop: the file being opened is dropped; the model shown stays."""
        if (spec := self.opener.stop()) is not None:
            self.statusBar().showMessage(f"Stopped opening {displayed(spec)}; the model shown stays", 15000)

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

    def open_folder_dialog(self) -> None:
        start = str(QSettings().value("lastFolder", str(Path.home())))
        path = QFileDialog.getExistingDirectory(self, "Open model folder", start)
        if path:
            QSettings().setValue("lastFolder", str(Path(path).parent))
            self.open_path(Path(path))

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
        self.status.new_model()
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
        self.status.show_selection()

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
        # (A preview being computed is dropped instead: its values went stale.)
        return self.init_panel.is_applying and self.state.refuse_if_busy(what)

    def _guarded(self, action, what: str) -> None:
        try:
            action()
        except Exception as exc:  # a failed undo must be a message, not a crash
            self.state.errorOccurred.emit(f"{what} failed: {type(exc).__name__}: {exc}")

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
        return window_closing.maybe_save(self)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.maybe_save():
            event.ignore()
            return
        self.opener.cancel_and_wait()
        self.statistics.cancel_and_wait()
        self.backward_panel.worker.cancel_and_wait()
        self.init_panel.worker.cancel_and_wait()  # a large edit being computed: nothing applied
        self.init_panel.preview_worker.cancel_and_wait()
        self.heatmap_view.worker.cancel_and_wait()
        self.histogram_panel.cancel_and_wait()
        self.series_view.cancel_and_wait()
        self.spectrum_view.worker.cancel_and_wait()
        self.value_grid.worker.cancel_and_wait()
        # an export still running is cancelled (its temporary file removed) before the window goes
        self.files_actions.worker.cancel_and_wait()
        if self.remember:
            settings.save_window(self)
        event.accept()
        self.closed.emit()
