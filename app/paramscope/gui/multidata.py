"""Answer every role a view asks about a cell in one call into Python (``multiData``).

Qt 6 views paint a cell after asking for ~8 roles at once through ``multiData``; Qt's default
answers them by calling ``data()`` once per role, and behind a proxy each call also maps the
index to the source again. Every one of those is a call from C++ into Python that must take the
GIL, which a worker thread computing statistics holds in short bursts: painting 20 rows of the
module tree took ~4,000 such calls, 25 ms idle and 50-100 ms while statistics streamed in
(issue 6, the longest stall of the event loop). One call per cell instead.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractProxyModel,
    QModelIndex,
    QModelRoleDataSpan,
    QPersistentModelIndex,
)


class OneCallPerCell:
    """Mixin for a ``QAbstractItemModel`` subclass (listed before it): ``multiData`` via ``data``."""

    def multiData(  # noqa: N802 (Qt's name)
        self, index: QModelIndex | QPersistentModelIndex, roleDataSpan: QModelRoleDataSpan  # noqa: N803
    ) -> None:
        data = self.data  # type: ignore[attr-defined]
        if isinstance(self, QAbstractProxyModel):  # map once, not once per role
            data, index = self.sourceModel().data, self.mapToSource(index)
        for role_data in roleDataSpan:
            value = data(index, role_data.role())
            if value is None:
                role_data.clearData()
            else:
                role_data.setData(value)
