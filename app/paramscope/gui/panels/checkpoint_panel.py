"""Checkpoint: what a training checkpoint held beside the weights, and which weight set is open.

Thin Qt over what the opener found (:class:`~paramscope.core.sources.sources.OpenedModel`'s ``notes``,
``extras``, ``entries`` and ``optimizers``): notes, the checkpoint's entries as a tree (epoch,
global step, hyper-parameters), and a table of per-parameter optimizer state statistics. When
the file holds several weight sets (``model``, ``ema``), a choice reopens it with another one:
the panel says which (``entryChosen``), the window reopens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from paramscope.core.files.optimizer_state import OptimizerSummary
from paramscope.gui.state import AppState

SORT_ROLE = Qt.ItemDataRole.UserRole
STATE_COLUMNS = ["Parameter", "State", "Shape", "Mean", "Std", "Min", "Max", "Norm"]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4f}"


class _SortableItem(QTreeWidgetItem):
    """Sorts numeric columns by value (``SORT_ROLE``), not by their text."""

    def __lt__(self, other: QTreeWidgetItem) -> bool:
        column = self.treeWidget().sortColumn() if self.treeWidget() else 0
        mine, theirs = self.data(column, SORT_ROLE), other.data(column, SORT_ROLE)
        if isinstance(mine, int | float) and isinstance(theirs, int | float):
            return mine < theirs
        return self.text(column) < other.text(column)


def _add_value(parent: QTreeWidgetItem, key: str, value: Any) -> None:
    """One entry under ``parent``; dicts and lists become branches (hyper-parameters, configs)."""
    if isinstance(value, Mapping) and value:
        item = QTreeWidgetItem(parent, [key, ""])
        for k, v in value.items():
            _add_value(item, str(k), v)
    elif isinstance(value, list | tuple) and value and not all(isinstance(v, bool | int | float | str) for v in value):
        item = QTreeWidgetItem(parent, [key, ""])
        for i, v in enumerate(value):
            _add_value(item, f"[{i}]", v)
    else:
        text = "{}" if isinstance(value, Mapping) else str(value)
        item = QTreeWidgetItem(parent, [key, text])
        item.setToolTip(1, text)


class CheckpointPanel(QWidget):
    """Notes, extras and optimizer state of the open source; the choice of weight set.

    Signals:
        entryChosen(str): the user picked another weight set of the open file.
    """

    entryChosen = Signal(str)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.entry_label = QLabel("Weight set:")
        self.entry_box = QComboBox()
        self.entry_box.setToolTip("This file holds several weight sets: open another one (--entry NAME)")
        self.entry_box.textActivated.connect(self._on_entry)
        row = QHBoxLayout()
        row.addWidget(self.entry_label)
        row.addWidget(self.entry_box, 1)
        self.info = QTreeWidget()
        self.info.setHeaderLabels(["Entry", "Value"])
        self.info.setUniformRowHeights(True)
        self.states = QTreeWidget()
        self.states.setHeaderLabels(STATE_COLUMNS)
        self.states.setUniformRowHeights(True)
        self.states.setSortingEnabled(True)
        self.states.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # the optimizer's order until asked
        self.empty = QLabel("Nothing beside the weights: no notes, checkpoint entries or optimizer state.")
        self.empty.setWordWrap(True)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.info)
        self.splitter.addWidget(self.states)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.empty)
        layout.addWidget(self.splitter, 1)
        state.sessionChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        opened = self.state.session.opened if self.state.has_session else None
        notes = list(opened.notes) if opened else []
        extras = dict(opened.extras) if opened else {}
        optimizers = list(opened.optimizers) if opened else []
        self._fill_entries(opened.entries if opened else [], opened.entry if opened else None)
        # the dock's tab says there is something to read (a folder shown as its tensors, and why)
        self.setWindowTitle(f"Checkpoint ({len(notes)} note{'s' if len(notes) > 1 else ''})" if notes else "Checkpoint")
        self._fill_info(notes, extras, optimizers)
        self._fill_states(optimizers)
        self.empty.setVisible(not (notes or extras or optimizers))
        self.splitter.setVisible(bool(notes or extras or optimizers))
        self.states.setVisible(any(o.stats for o in optimizers))

    def _fill_entries(self, entries: list[str], current: str | None) -> None:
        self.entry_box.blockSignals(True)
        self.entry_box.clear()
        self.entry_box.addItems(entries)
        if current in entries:
            self.entry_box.setCurrentText(current)
        self.entry_box.blockSignals(False)
        several = len(entries) > 1
        self.entry_label.setVisible(several)
        self.entry_box.setVisible(several)

    def _fill_info(self, notes: list[str], extras: dict[str, Any], optimizers: list[OptimizerSummary]) -> None:
        self.info.clear()
        if notes:
            top = QTreeWidgetItem(self.info, [f"Notes ({len(notes)})", ""])
            for note in notes:
                item = QTreeWidgetItem(top, [note, ""])
                item.setToolTip(0, note)
            top.setExpanded(True)
        if extras:
            top = QTreeWidgetItem(self.info, ["Checkpoint", ""])
            for key, value in extras.items():
                _add_value(top, key, value)
            top.setExpanded(True)
        for summary in optimizers:
            top = QTreeWidgetItem(self.info, [f"Optimizer ({summary.entry})", summary.kind])
            QTreeWidgetItem(top, ["parameter states", str(summary.stored)])
            if summary.step is not None:
                QTreeWidgetItem(top, ["step", f"{summary.step:g}"])
            for i, group in enumerate(summary.groups):
                _add_value(top, f"group {i}", group)
            QTreeWidgetItem(top, ["named", "yes" if summary.mapped else "no: by the optimizer's index"])
            top.setExpanded(True)
        self.info.resizeColumnToContents(0)

    def _fill_states(self, optimizers: list[OptimizerSummary]) -> None:
        self.states.setSortingEnabled(False)
        self.states.clear()
        several = len(optimizers) > 1
        for summary in optimizers:
            parent: QTreeWidget | QTreeWidgetItem = self.states
            if several:
                parent = QTreeWidgetItem(self.states, [summary.entry, summary.kind])
                parent.setExpanded(True)
            for s in summary.stats:
                label = s.name if s.name is not None else f"#{s.index}"
                values = [s.mean, s.std, s.min, s.max, s.norm]
                item = _SortableItem(parent, [label, s.key, str(list(s.shape))] + [_fmt(v) for v in values])
                item.setData(0, SORT_ROLE, s.index)
                for column, value in enumerate(values, start=3):
                    item.setData(column, SORT_ROLE, value)
                    item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.states.setSortingEnabled(True)
        self.states.resizeColumnToContents(0)

    def _on_entry(self, entry: str) -> None:
        opened = self.state.session.opened if self.state.has_session else None
        if opened is not None and entry != opened.entry:
            self.entryChosen.emit(entry)
