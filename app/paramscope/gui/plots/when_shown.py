"""Views whose refresh is costly (a reduction of a large matrix, an SVD) redraw only on screen."""

from __future__ import annotations

from typing import Any


class RefreshWhenShown:
    """Mixin for a ``QWidget`` subclass (listed before it) with a ``refresh()`` that clears
    ``_dirty``: :meth:`mark_stale` refreshes now if the view is on screen, else when it is shown.

    A refresh that raises shows its one-line message (``refresh_failed``): an exception out of
    ``showEvent``, a Qt virtual, killed the process (SIGSEGV; a sparse buffer's heatmap did)."""

    _dirty = True

    def mark_stale(self) -> None:
        self._dirty = True
        if self.isVisible():  # type: ignore[attr-defined]
            self._refresh()

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)  # type: ignore[misc]
        if self._dirty:
            self._refresh()

    def _refresh(self) -> None:
        try:
            self.refresh()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 (a view's failure must not take the window down)
            self._dirty = False
            self.refresh_failed(f"{type(exc).__name__}: {' '.join(str(exc).split())}")  # type: ignore[attr-defined]
