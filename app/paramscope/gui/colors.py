"""Colours shared by the views, so a tied group looks the same in the tree and the table."""

from __future__ import annotations

from PySide6.QtGui import QColor

from paramscope.gui.palette import is_dark

# Light enough to keep black text readable on both light and dark-ish palettes.
TIED_HIGHLIGHT = QColor(255, 214, 102)  # amber
NONFINITE_BACKGROUND = QColor(255, 205, 205)
NONFINITE_TEXT = QColor(170, 0, 0)
BUFFER_TEXT = QColor(90, 90, 150)
MUTED_TEXT = QColor(128, 128, 128)
WARNING_TEXT = QColor(170, 90, 0)
HIGHLIGHT_TEXT = QColor(0, 0, 0)

CURRENT_PLOT = QColor(40, 110, 200)
PREVIOUS_PLOT = QColor(230, 120, 30)
THEORY_PLOT = QColor(200, 30, 60)


def on_window(color: QColor) -> QColor:
    """``color`` for text drawn straight on the window: lightened when the palette is dark.

    The text colours above are dark (for light windows and the pink cell background); on a dark
    window dark red is unreadable.
    """
    return color.lighter(190) if is_dark() else color
