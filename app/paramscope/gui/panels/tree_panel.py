"""The module tree panel: filter box over a lazy tree; selecting a module selects it in the state."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex
from PySide6.QtWidgets import QAbstractItemView, QLineEdit, QTreeView, QVBoxLayout, QWidget

from paramscope.gui.models.ties import tied_modules
from paramscope.gui.models.tree_model import (
    COL_DETAILS,
    COL_NAME,
    COL_TYPE,
    NAME_ROLE,
    ModuleFilterProxy,
    ModuleTreeModel,
)
from paramscope.gui.state import AppState
from paramscope.gui.widths import fit_columns

NAME_SHARE = 0.6  # of the tree's width, at most, for the Module column when a model opens
NAME_MIN_WIDTH = 160

EXPAND_ALL_UP_TO = 200  # modules; larger models open with the first levels expanded
FILTER_EXPAND_ALL_UP_TO = 2_000  # matches of a filter, all shown expanded; past them only the first
SHOWN_MATCHES = 200  # (expanding 100,000 rows held the GUI thread for seconds)


class ModuleTreePanel(QWidget):
    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = ModuleTreeModel(parent=self)
        self.proxy = ModuleFilterProxy(self)
        self.proxy.setSourceModel(self.model)

        self.filter_box = QLineEdit(self)
        self.filter_box.setObjectName("filterBox")
        self.filter_box.setPlaceholderText("Filter modules (name or type)…")
        self.filter_box.setClearButtonEnabled(True)
        self.filter_box.textChanged.connect(self._on_filter)

        self.view = QTreeView(self)
        self.view.setModel(self.proxy)
        self.view.setUniformRowHeights(True)  # fast with many thousands of rows
        self.view.setAlternatingRowColors(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setAllColumnsShowFocus(True)
        self.view.selectionModel().currentRowChanged.connect(self._on_current)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.filter_box)
        layout.addWidget(self.view)

        state.sessionChanged.connect(self._on_session)
        state.moduleSelected.connect(self._select)
        state.tiedGroupSelected.connect(self._on_group)
        state.summariesChanged.connect(self._on_summaries)
        if state.has_session:
            self._on_session()

    def _on_session(self) -> None:
        session = self.state.session if self.state.has_session else None
        self.model.set_report(
            session.report if session else None, {n: session.summaries[n] for n in session.nonfinite} if session else None
        )
        self.proxy.reapply()  # a filter typed before stays, over the new tree
        if session is None:
            return
        if len(session.report.modules) <= EXPAND_ALL_UP_TO:
            self.view.expandAll()
        else:
            self.view.expandToDepth(0)
        fit_columns(  # Details (extra_repr) gets its full width: the tree scrolls sideways
            self.view.header(), self._visible_sample(), maximum=240, caps={COL_TYPE: 150, COL_DETAILS: 700}
        )
        wanted = self.view.header().sectionSize(COL_NAME) + self.view.indentation() * (self._depth_hint() + 1)
        # a deep tree must not push Params out of a narrow dock: names elide, the tooltip has them
        room = max(NAME_MIN_WIDTH, int(self.view.viewport().width() * NAME_SHARE))
        self.view.header().resizeSection(COL_NAME, min(wanted, room))
        self.view.header().setStretchLastSection(True)
        self._on_group(self.state.selected_group)
        self._select(self.state.selected_module)

    def _reveal(self, index: QModelIndex) -> None:
        """Expand every ancestor of ``index`` (a row of the proxy)."""
        parent = index.parent()
        while parent.isValid():
            self.view.expand(parent)
            parent = parent.parent()

    def _visible_sample(self) -> _FlatSample:
        return _FlatSample(self.model)

    def _depth_hint(self) -> int:
        names = list(self.model.report.modules) if self.model.report else []
        return min(6, max((n.count(".") + 1 for n in names[:500] if n), default=0))

    def _on_filter(self, text: str) -> None:
        self.proxy.set_filter_text(text)
        matches = self.proxy.matches
        if text and len(matches) <= FILTER_EXPAND_ALL_UP_TO:
            self.view.expandAll()
        elif text:
            for name in matches[:SHOWN_MATCHES]:
                self._reveal(self.proxy.mapFromSource(self.model.index_of(name)))
        self._select(self.state.selected_module)

    def _on_summaries(self, _names: tuple[str, ...]) -> None:
        if self.state.has_session:  # only NaN/Inf show in the tree: the session keeps which
            session = self.state.session
            self.model.set_nonfinite({n: session.summaries[n] for n in session.nonfinite})

    def _on_group(self, index: int) -> None:
        if self.state.has_session:
            self.model.set_highlight(tied_modules(self.state.session.report, index))

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid() and self.state.has_session:
            self.state.select_module(current.data(NAME_ROLE))

    def _select(self, name: str) -> None:
        """Show module ``name`` as selected (when the selection came from elsewhere)."""
        source = self.model.index_of(name)
        index = self.proxy.mapFromSource(source)
        if not index.isValid() or self.view.currentIndex() == index:
            return
        self._reveal(index)
        self.view.selectionModel().setCurrentIndex(
            index,
            QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows,
        )
        self.view.scrollTo(index)


class _FlatSample:
    """The first rows of the tree, depth first, looking like a table to :func:`fit_columns`."""

    def __init__(self, model: ModuleTreeModel, limit: int = 60) -> None:
        self._model = model
        self._indexes: list[QModelIndex] = []
        stack = [model.index(0, 0)] if model.rowCount() else []
        while stack and len(self._indexes) < limit:
            index = stack.pop()
            self._indexes.append(index)
            rows = model.rowCount(index)
            stack.extend(model.index(r, 0, index) for r in reversed(range(min(rows, limit))))

    def rowCount(self) -> int:  # noqa: N802  (mimics the Qt model API fit_columns reads)
        return len(self._indexes)

    def columnCount(self) -> int:  # noqa: N802
        return COL_DETAILS + 1

    def headerData(self, section: int, orientation: object) -> object:  # noqa: N802
        return self._model.headerData(section, orientation)  # type: ignore[arg-type]

    def index(self, row: int, column: int) -> QModelIndex:
        return self._indexes[row].siblingAtColumn(column)
