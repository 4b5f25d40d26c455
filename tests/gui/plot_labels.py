"""The labels a pyqtgraph axis draws, as it lays them out (for tests of what a user can read)."""

from __future__ import annotations

from PySide6.QtGui import QImage, QPainter


def drawn_labels(axis) -> list[tuple[object, str]]:
    """(rectangle, text) of every label ``axis`` draws now."""
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        axis.picture = None  # pyqtgraph caches the drawn axis
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [(rect, text) for rect, _flags, text in specs[2] if text]
