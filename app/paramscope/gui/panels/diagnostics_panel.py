"""Diagnostics of the open model (unregistered tensors first); clicking one selects what it names."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.model.diagnostics import ERROR, WARNING, Diagnostic
from paramscope.gui import colors
from paramscope.gui.state import AppState

DIAGNOSTIC_ROLE = Qt.ItemDataRole.UserRole
_SEVERITY_COLOR = {ERROR: colors.NONFINITE_TEXT, WARNING: colors.WARNING_TEXT}
# What each kind means and what to do (tooltips); the message says which tensor.
KIND_HELP = {
    "unregistered": "A tensor attribute that is neither a Parameter nor a buffer (the tutorial's weight2): "
    "named_parameters(), state_dict(), .to() and optimizers never see it. "
    "Wrap it in nn.Parameter, or register_buffer() it.",
    "nonfinite": "NaN or Inf values: every output that uses them will be NaN/Inf. Re-initialize the tensor.",
    "lazy": "A lazy module's parameter has no shape yet: run a forward pass (Backward panel) to materialize it.",
    "frozen": "requires_grad=False: backward gives it no gradient and an optimizer will not change it.",
    "non_persistent": "A buffer registered with persistent=False: state_dict() leaves it out, so a saved "
    "checkpoint does not restore it.",
    "tied": "Several names reach one tensor (a shared module or parameter): changing one changes all, and "
    "their gradients add up.",
    "nonfinite_grad": "The gradient has NaN or Inf values: check the input, the loss and the initialization.",
    "zero_grad": "The gradient is exactly zero: the tensor does not influence the loss for this input.",
}


class DiagnosticsPanel(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.diagnostics: list[Diagnostic] = []
        self.list = QTreeWidget(self)
        self.list.setHeaderLabels(["", "Message"])
        self.list.setRootIsDecorated(False)
        self.list.setWordWrap(True)  # messages are sentences; few enough to wrap cheaply
        # The message column ends at the view's edge (the full text is in the tooltip).
        header = self.list.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.itemClicked.connect(self._on_clicked)
        self.list.itemActivated.connect(self._on_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        state.sessionChanged.connect(self.refresh)
        state.summariesChanged.connect(lambda _names: self.refresh())
        state.tensorsChanged.connect(lambda _names: self.refresh())
        state.gradientsChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Show the session's diagnostics; the list is rebuilt only when they changed (the
        session keeps them, so a batch of statistics without NaN/Inf costs nothing here)."""
        diagnostics = self.state.session.diagnostics() if self.state.has_session else []
        if diagnostics is not self.diagnostics:
            self.diagnostics = diagnostics
            self._show()

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:  # severities lightened on a dark window
            self._show()

    def _show(self) -> None:
        self.list.clear()
        for diagnostic in self.diagnostics:
            item = QTreeWidgetItem([diagnostic.severity, diagnostic.message])
            item.setData(0, DIAGNOSTIC_ROLE, diagnostic)
            help_text = KIND_HELP.get(diagnostic.kind, f"{diagnostic.severity}: {diagnostic.kind}")
            item.setToolTip(0, f"{diagnostic.kind}: {help_text}")
            item.setToolTip(1, f"{diagnostic.message}\n\n{help_text}")
            color = _SEVERITY_COLOR.get(diagnostic.severity)
            color = colors.on_window(color) if color is not None else None
            if color is not None:
                item.setForeground(0, color)
            self.list.addTopLevelItem(item)
        self.list.resizeColumnToContents(0)

    def messages(self) -> list[str]:
        return [d.message for d in self.diagnostics]

    def _on_clicked(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        self.select(item.data(0, DIAGNOSTIC_ROLE))

    def select(self, diagnostic: Diagnostic) -> None:
        """Select the tensor the diagnostic names (and its module), or the module holding it."""
        if not self.state.has_session or not diagnostic.names:
            return
        report = self.state.session.report
        name = diagnostic.names[0]
        if name in report.alias_to_name:
            canonical = report.alias_to_name[name]
            self.state.select_module(report.tensor(canonical).module)
            self.state.select_tensor(canonical)
        elif name in report.modules:
            self.state.select_module(name)
        else:  # an unregistered attribute: select the module that holds it
            module = name.rpartition(".")[0]
            if module in report.modules:
                self.state.select_module(module)
