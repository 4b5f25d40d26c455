"""Light and dark: follow the system's colour scheme, and make the pyqtgraph plots follow too.

Qt widgets take the platform palette by themselves; pyqtgraph draws with its own background and
foreground, so those are set from the scheme and updated when the system switches.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget

LIGHT_PLOT = ("w", "k")
DARK_PLOT = ((30, 30, 30), (220, 220, 220))


def is_dark(app: QGuiApplication | None = None) -> bool:
    """True when the system asks for a dark scheme (Qt 6.5+), else judged from the palette."""
    app = app or QGuiApplication.instance()
    if app is None:
        return False
    hints = app.styleHints()
    scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
    if scheme == Qt.ColorScheme.Dark:
        return True
    if scheme == Qt.ColorScheme.Light:
        return False
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def plot_colors(dark: bool) -> tuple[object, object]:
    """(background, foreground) for pyqtgraph."""
    return DARK_PLOT if dark else LIGHT_PLOT


def apply_plot_colors(root: QWidget | None = None, dark: bool | None = None) -> bool:
    """Set pyqtgraph's defaults for new plots and restyle the plots under ``root`` (or every window).

    Returns whether the dark colours were applied.
    """
    dark = is_dark() if dark is None else dark
    background, foreground = plot_colors(dark)
    pg.setConfigOptions(background=background, foreground=foreground)
    roots = [root] if root is not None else list(QApplication.topLevelWidgets())
    pen = pg.mkPen(foreground)
    for widget in roots:
        for plot_widget in widget.findChildren(pg.PlotWidget):
            plot_widget.setBackground(background)
            item = plot_widget.getPlotItem()
            for name in ("left", "bottom", "right", "top"):
                axis = item.getAxis(name)
                axis.setPen(pen)
                axis.setTextPen(pen)
            item.titleLabel.setAttr("color", foreground)
            item.titleLabel.setText(item.titleLabel.text)
    return dark


def follow_system(app: QGuiApplication) -> None:
    """Apply the scheme now and whenever the system changes it (Qt 6.5+)."""
    apply_plot_colors(dark=is_dark(app))
    hints = app.styleHints()
    if hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda _scheme: apply_plot_colors())
