"""The module tree as a lazy Qt item model over ``report.modules``, and its filter proxy.

Rows are created on demand (``rowCount`` from ``ModuleInfo.children``, ``fetchMore`` in batches
for modules with thousands of children), so the tree of a large model appears at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)

from paramscope.core.files.infer_types import kind_of
from paramscope.core.model.model_statistics import TensorSummary
from paramscope.core.model.report import ModelReport, ModuleInfo
from paramscope.gui import colors
from paramscope.gui.multidata import OneCallPerCell

AnyIndex = QModelIndex | QPersistentModelIndex

NAME_ROLE = Qt.ItemDataRole.UserRole + 1  # the module's qualified name ("" for the root)
FETCH_BATCH = 500
ROOT_LABEL = "(model)"

# Params beside Module: the size of each subtree is read together with its name.
COLUMNS = ("Module", "Params", "Type", "Own", "Badges", "Details")
COL_NAME, COL_TOTAL, COL_TYPE, COL_OWN, COL_BADGES, COL_DETAILS = range(len(COLUMNS))
_TOOLTIPS = (
    "Attribute name of the module (qualified name in the tooltip)",
    "Parameter elements in this subtree (a shared parameter counted once)",
    "Module class",
    "Parameter elements owned by this module itself",
    "tied: owns a parameter with several names; buf: owns buffers; !: a warning (hover for details)",
    "extra_repr(), as print(model) shows it",
)


def fmt_count(n: int) -> str:
    return f"{n:,}"


def type_text(info: ModuleInfo) -> str:
    """The class, or for a checkpoint's container what it probably was: ``Linear (inferred)``."""
    if info.inferred_type:
        return f"{kind_of(info.inferred_type)} (inferred)"
    return info.type_name


class ModuleTreeModel(OneCallPerCell, QAbstractItemModel):
    """Read-only tree of modules. Internal ids are positions in ``report.modules`` plus one."""

    def __init__(self, report: ModelReport | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._report: ModelReport | None = None
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        self._row_in_parent: dict[str, int] = {}
        self._fetched: dict[str, int] = {}
        self._badges: dict[str, tuple[str, str]] = {}
        self._summaries: dict[str, TensorSummary] = {}  # of the tensors with NaN/Inf only
        self._highlighted: frozenset[str] = frozenset()
        if report is not None:
            self.set_report(report)

    # --- content ---------------------------------------------------------------------------
    def set_report(self, report: ModelReport | None, nonfinite: Mapping[str, TensorSummary] | None = None) -> None:
        """Show ``report``'s modules; ``nonfinite``: summaries of tensors with NaN/Inf (see set_nonfinite)."""
        self.beginResetModel()
        self._report = report
        self._names = list(report.modules) if report is not None else []
        # made once per report (in the worker that opened a file): 100,000 modules are ~0.1 s
        self._ids = report.module_order if report is not None else {}
        self._row_in_parent = report.module_rows if report is not None else {}
        self._fetched = {}
        self._badges = {}
        self._summaries = dict(nonfinite or {})
        self._highlighted = frozenset()
        self.endResetModel()

    @property
    def report(self) -> ModelReport | None:
        return self._report

    def module(self, index: AnyIndex) -> ModuleInfo | None:
        name = self._name_of(index)
        return None if name is None or self._report is None else self._report.modules[name]

    def set_nonfinite(self, summaries: Mapping[str, TensorSummary]) -> None:
        """The summaries of the tensors with NaN/Inf values now (their warning badges); the tree is
        told only when they changed, so a batch of finite statistics costs nothing here."""
        if summaries.keys() == self._summaries.keys() and all(s is self._summaries[n] for n, s in summaries.items()):
            return
        self._summaries = dict(summaries)
        self._badges.clear()
        self._emit_column_changed(COL_BADGES)

    def set_highlight(self, module_names: set[str] | frozenset[str]) -> None:
        """Paint these modules (those holding aliases of the selected tied group) in one colour."""
        changed = self._highlighted ^ frozenset(module_names)
        self._highlighted = frozenset(module_names)
        for name in changed:
            index = self.index_of(name)
            if index.isValid():
                self.dataChanged.emit(
                    index, index.siblingAtColumn(len(COLUMNS) - 1), [Qt.ItemDataRole.BackgroundRole]
                )

    @property
    def highlighted(self) -> frozenset[str]:
        return self._highlighted

    def _emit_column_changed(self, column: int) -> None:
        # Only fetched rows exist for the views; announce the change node by node.
        for name in [""] + [n for n in self._fetched if self._fetched[n]]:
            if name not in self._ids:
                continue
            if name == "":
                first = self.index(0, column)
                self.dataChanged.emit(first, first)
            rows = self._fetched.get(name, 0)
            if rows:
                parent = self.index_of(name)
                self.dataChanged.emit(self.index(0, column, parent), self.index(rows - 1, column, parent))

    # --- navigation --------------------------------------------------------------------------
    def _name_of(self, index: AnyIndex) -> str | None:
        if not index.isValid():
            return None
        return self._names[index.internalId() - 1]

    def index_of(self, name: str, column: int = 0) -> QModelIndex:
        """The index of module ``name``, fetching the rows on its path first."""
        if self._report is None or name not in self._report.modules:
            return QModelIndex()
        if name == "":
            return self.createIndex(0, column, self._ids[""] + 1)
        info = self._report.modules[name]
        parent_name = info.parent or ""
        parent_index = self.index_of(parent_name)
        row = self._row_in_parent[name]
        while self._fetched_rows(parent_name) <= row:
            self.fetchMore(parent_index)
        return self.createIndex(row, column, self._ids[name] + 1)

    def _fetched_rows(self, name: str) -> int:
        if self._report is None:
            return 0
        if name not in self._fetched:
            self._fetched[name] = min(len(self._report.modules[name].children), FETCH_BATCH)
        return self._fetched[name]

    def index(self, row: int, column: int, parent: AnyIndex = QModelIndex()) -> QModelIndex:  # noqa: B008
        if self._report is None or row < 0 or not 0 <= column < len(COLUMNS):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, self._ids[""] + 1) if row == 0 else QModelIndex()
        if parent.column() != 0:
            return QModelIndex()
        parent_name = self._names[parent.internalId() - 1]
        if row >= self._fetched_rows(parent_name):
            return QModelIndex()
        child = self._report.modules[parent_name].children[row]
        return self.createIndex(row, column, self._ids[child] + 1)

    def parent(self, index: AnyIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]  # noqa: B008
        name = self._name_of(index)
        if name is None or name == "" or self._report is None:
            return QModelIndex()
        parent_name = self._report.modules[name].parent or ""
        if parent_name == "":
            return self.createIndex(0, 0, self._ids[""] + 1)
        return self.createIndex(self._row_in_parent[parent_name], 0, self._ids[parent_name] + 1)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        if self._report is None:
            return 0
        if not parent.isValid():
            return 1
        if parent.column() != 0:
            return 0
        return self._fetched_rows(self._names[parent.internalId() - 1])

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def hasChildren(self, parent: AnyIndex = QModelIndex()) -> bool:  # noqa: B008
        if self._report is None:
            return False
        if not parent.isValid():
            return True
        if parent.column() != 0:
            return False
        return bool(self._report.modules[self._names[parent.internalId() - 1]].children)

    def canFetchMore(self, parent: AnyIndex) -> bool:
        name = self._name_of(parent)
        if name is None or parent.column() != 0 or self._report is None:
            return False
        return self._fetched_rows(name) < len(self._report.modules[name].children)

    def fetchMore(self, parent: AnyIndex) -> None:
        if not self.canFetchMore(parent):
            return
        name = self._names[parent.internalId() - 1]
        have = self._fetched_rows(name)
        total = len(self._report.modules[name].children)  # type: ignore[union-attr]
        more = min(total, have + FETCH_BATCH)
        self.beginInsertRows(parent, have, more - 1)
        self._fetched[name] = more
        self.endInsertRows()

    def fetch_all(self) -> None:
        """Create every row (the filter must see the whole tree)."""
        if self._report is None:
            return
        if all(self._fetched_rows(n) == len(i.children) for n, i in self._report.modules.items()):
            return
        self.beginResetModel()
        self._fetched = {n: len(i.children) for n, i in self._report.modules.items()}
        self.endResetModel()

    # --- data --------------------------------------------------------------------------------
    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return _TOOLTIPS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        info = self.module(index)
        if info is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(info, column)
        if role == NAME_ROLE:
            return info.name
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(info, column)
        if role == Qt.ItemDataRole.BackgroundRole and info.name in self._highlighted:
            return colors.TIED_HIGHLIGHT
        if role == Qt.ItemDataRole.ForegroundRole:
            if info.name in self._highlighted:
                return colors.HIGHLIGHT_TEXT
            if column == COL_BADGES and "!" in self._badge(info)[0]:
                return colors.WARNING_TEXT
            if info.same_as is not None or column == COL_DETAILS:
                return colors.MUTED_TEXT
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (COL_TOTAL, COL_OWN):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, info: ModuleInfo, column: int) -> str:
        if column == COL_NAME:
            return info.local_name if info.name else ROOT_LABEL
        if column == COL_TYPE:
            return type_text(info) if info.same_as is None else f"{type_text(info)} (= {info.same_as})"
        if column == COL_TOTAL:
            return fmt_count(info.total_params)
        if column == COL_OWN:
            return fmt_count(info.own_params) if info.own_params else ""
        if column == COL_BADGES:
            return self._badge(info)[0]
        if not info.extra_repr and info.inferred_type:
            return f"{info.inferred_type}, inferred from shapes"
        return info.extra_repr.replace("\n", " ")

    def _tooltip(self, info: ModuleInfo, column: int) -> str:
        if column == COL_BADGES:
            return self._badge(info)[1] or "no ties, buffers or warnings"
        if column == COL_DETAILS and info.extra_repr:
            return info.extra_repr
        lines = [info.name or ROOT_LABEL, info.type_name]
        if info.inferred_type:
            lines.append(f"probably {info.inferred_type}: guessed from its tensors' names and shapes (no code in the file)")
        if info.same_as is not None:
            lines.append(f"the same module object as {info.same_as}")
        return "\n".join(lines)

    def _badge(self, info: ModuleInfo) -> tuple[str, str]:
        """(short marks, explanation) for a module's own parameters, buffers and problems."""
        cached = self._badges.get(info.name)
        if cached is not None:
            return cached
        report = self._report
        assert report is not None
        marks: list[str] = []
        why: list[str] = []
        prefix = f"{info.name}." if info.name else ""
        tied = [
            f"{prefix}{local}"
            for local, group_name in self._own_aliases(info)
            if report.group_of(group_name) is not None
        ]
        if tied:
            marks.append("tied")
            why += [f"{n} is tied: " + " = ".join(report.group_of(n).names) for n in tied]  # type: ignore[union-attr]
        if info.buffers:
            marks.append(f"buf {len(info.buffers)}")
            why.append("buffers: " + ", ".join(info.buffers))
        warnings = [u.message for u in report.unregistered if u.module == info.name]
        for name in info.parameters + info.buffers:
            tensor = report.tensor(name)
            if tensor.shape is None:
                warnings.append(f"{name} is uninitialized (lazy)")
            summary = self._summaries.get(name)
            if summary is not None and summary.stats.nonfinite:
                warnings.append(f"{name} has {summary.stats.nan} NaN and {summary.stats.inf} Inf values")
        if warnings:
            marks.append(f"! {len(warnings)}")
            why += warnings
        result = (" ".join(marks), "\n".join(why))
        self._badges[info.name] = result
        return result

    def _own_aliases(self, info: ModuleInfo) -> list[tuple[str, str]]:
        """(local attribute, canonical name) of the tensors this module holds directly."""
        report = self._report
        assert report is not None
        prefix = f"{info.name}." if info.name else ""
        out = []
        for canonical in info.parameters + info.buffers:
            for alias in report.tensor(canonical).aliases:
                if alias.startswith(prefix) and "." not in alias[len(prefix) :]:
                    out.append((alias[len(prefix) :], canonical))
        return out


def refilter(proxy: QSortFilterProxyModel, change: Callable[[], None]) -> None:
    """Apply ``change`` to a proxy's filter settings and re-filter (Qt >= 6.9 API when present)."""
    if hasattr(proxy, "beginFilterChange"):
        proxy.beginFilterChange()
        change()
        proxy.endFilterChange()
    else:
        change()
        proxy.invalidateFilter()


def modules_matching(report: ModelReport, text: str) -> tuple[list[str], set[str]]:
    """Modules whose qualified name or type contains ``text`` (lower case), in tree order, and
    the set of those with every ancestor (what a filtered tree shows)."""
    matches = [n for n, info in report.modules.items() if text in n.lower() or text in type_text(info).lower()]
    shown: set[str] = set()
    for name in matches:
        while name not in shown:
            shown.add(name)
            if not name:
                break
            name = name.rpartition(".")[0]
    return matches, shown


class ModuleFilterProxy(OneCallPerCell, QSortFilterProxyModel):
    """Shows modules whose qualified name or type contains the filter text, with their ancestors.

    Over a module tree, which rows show is worked out once per text (:func:`modules_matching`):
    Qt's recursive filtering asked every row of a 110,000-module tree whether a descendant
    matched (3.4 s on the GUI thread); rows are now asked as their parents open, a set lookup.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self._text = ""
        self.matches: list[str] = []  # the modules that match, in tree order
        self._shown: set[str] | None = None  # those with their ancestors; None: ask each row

    @property
    def text(self) -> str:
        return self._text

    def set_filter_text(self, text: str) -> None:
        text = text.strip().lower()
        if text == self._text:
            return
        source = self.sourceModel()
        matches: list[str] = []
        shown = None
        if text and isinstance(source, ModuleTreeModel) and source.report is not None:
            source.fetch_all()  # the filter can only see rows that exist
            matches, shown = modules_matching(source.report, text)

        def change() -> None:
            self._text, self.matches, self._shown = text, matches, shown
            self.setRecursiveFilteringEnabled(shown is None)  # ancestors are in ``shown``

        refilter(self, change)

    def reapply(self) -> None:
        """The same text over a new tree (another model was opened)."""
        text, self._text = self._text, ""
        self.set_filter_text(text)

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        if not self._text:
            return True
        source = self.sourceModel()
        index = source.index(source_row, 0, source_parent)
        if not index.isValid():
            return False
        if isinstance(source, ModuleTreeModel):
            info = source.module(index)
            if info is None:
                return False
            if self._shown is not None:
                return info.name in self._shown
            return self._text in info.name.lower() or self._text in type_text(info).lower()
        return self._text in str(index.data()).lower()
