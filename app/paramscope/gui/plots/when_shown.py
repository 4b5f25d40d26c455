"""Views whose refresh is costly (a reduction of a large matrix, an SVD) redraw only on screen."""

from __future__ import annotations

from typing import Any


class RefreshWhenShown:
    """Mixin for a ``QWidget`` subclass (listed before it) with a ``refresh()`` that clears
    ``_dirty``: :meth:`mark_stale` refreshes now if the view is on screen, else when it is shown."""

    _dirty = True

    def mark_stale(self) -> None:
        self._dirty = True
        if self.isVisible():  # type: ignore[attr-defined]
            self.refresh()  # type: ignore[attr-defined]

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)  # type: ignore[misc]
        if self._dirty:
            self.refresh()  # type: ignore[attr-defined]
