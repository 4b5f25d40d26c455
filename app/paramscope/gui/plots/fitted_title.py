"""A plot title that fits its plot: elided in the middle, the whole text in the tooltip.

pyqtgraph makes a plot at least as wide as its title, so a long tensor name
(``Transformer.encoderblock_0.MlpBlock_3.Dense_0.bias``) made the plot wider than the room it
had: its right side, bars and axis, went out of view. :class:`FittedTitle` elides the title to
the plot's width whenever either changes.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFont, QFontMetricsF

FULL_TITLE = "paramscopeFullTitle"  # the plot item's property with the whole title (exports use it)
TITLE_POINTS = 11.0  # pyqtgraph's title size
MARGIN_PX = 24


class FittedTitle(QObject):
    """The title of ``widget``'s plot, kept within the widget's width."""

    def __init__(self, widget: pg.PlotWidget) -> None:
        super().__init__(widget)
        self.widget = widget
        self.text = ""
        self._shown: str | None = None
        widget.installEventFilter(self)

    def set(self, text: str) -> None:
        """Show ``text`` (empty: no title), elided to fit."""
        self.text = text
        self.widget.getPlotItem().setProperty(FULL_TITLE, text)
        self.widget.setToolTip(text)
        self._fit()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Resize:
            self._fit()
        return False

    def _fit(self) -> None:
        font = QFont(self.widget.font())
        font.setPointSizeF(TITLE_POINTS)
        item = self.widget.getPlotItem()
        # The title sits over the data area: the widget's width less what lies beside that area
        # (axes, a colour bar), as laid out now; else the axes alone.
        beside = item.width() - item.vb.width() if item.vb.width() > 0 else sum(
            item.getAxis(side).width() for side in ("left", "right") if item.getAxis(side).isVisible()
        )
        room = max(40.0, self.widget.width() - beside - MARGIN_PX)
        shown = QFontMetricsF(font).elidedText(self.text, Qt.TextElideMode.ElideMiddle, room) if self.text else ""
        if shown != self._shown:  # laying out the text is the costly part of a plot update
            self._shown = shown
            item.setTitle(shown or None)
