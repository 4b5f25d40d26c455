"""Plot colours from the window's palette, so pyqtgraph never draws black inside a light window.

Qt widgets take the palette by themselves; pyqtgraph draws with its own background and
foreground, so those are set from the application palette at start, after every theme change
(:mod:`theme`) and whenever the system switches between light and dark.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QWidget
from shiboken6 import isValid

_followed: set[int] = set()  # applications whose scheme changes are already followed


def is_dark(app: QGuiApplication | None = None) -> bool:
    """True when the window's palette is dark (its background darker than mid-grey)."""
    app = app or QGuiApplication.instance()
    if app is None:
        return False
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def plot_colors(app: QGuiApplication | None = None) -> tuple[QColor, QColor]:
    """(background, foreground) for pyqtgraph: the palette's Base and Text colours."""
    app = app or QGuiApplication.instance()
    palette = app.palette() if app is not None else QPalette()
    return QColor(palette.color(QPalette.ColorRole.Base)), QColor(palette.color(QPalette.ColorRole.Text))


def apply_plot_colors(root: QWidget | None = None) -> QColor:
    """Set pyqtgraph's defaults for new plots and restyle the plots under ``root`` (or every window).

    Returns the background colour applied.
    """
    background, foreground = plot_colors()
    pg.setConfigOptions(background=background, foreground=foreground)
    roots = [root] if root is not None else list(QApplication.topLevelWidgets())
    pen = pg.mkPen(foreground)
    for widget in roots:
        if not isValid(widget):  # a window being deleted is still listed until the event loop runs
            continue
        for plot_widget in widget.findChildren(pg.PlotWidget):
            plot_widget.setBackground(background)
            item = plot_widget.getPlotItem()
            for name in ("left", "bottom", "right", "top"):
                axis = item.getAxis(name)
                axis.setPen(pen)
                axis.setTextPen(pen)
            item.titleLabel.setAttr("color", foreground)
            item.titleLabel.setText(item.titleLabel.text)
            legend = item.legend
            if legend is not None:
                legend.setLabelTextColor(foreground)
                legend.setBrush(_legend_brush(background))
    return background


def _legend_brush(background: QColor) -> QColor:
    color = QColor(background)
    color.setAlpha(200)  # bars stay visible behind the legend, its text stays readable
    return color


def follow_system(app: QGuiApplication) -> None:
    """Apply the palette's colours now, after every theme change and system scheme change."""
    from paramscope.gui.theme import on_theme_changed

    apply_plot_colors()
    if id(app) in _followed:
        return
    _followed.add(id(app))
    on_theme_changed(apply_plot_colors)
    hints = app.styleHints()
    if hasattr(hints, "colorSchemeChanged"):
        # Qt updates the palette after announcing the scheme: restyle on the next turn.
        hints.colorSchemeChanged.connect(lambda _scheme: QTimer.singleShot(0, apply_plot_colors))
