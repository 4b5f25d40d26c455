"""The main window's geometry: a fresh window's size on the screen, dock sizes, Reset layout.

Functions over the window and its docks; the window calls them when it is first shown, from
View > Reset layout, and at start-up (``fit_to_screen``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

if TYPE_CHECKING:  # pragma: no cover
    from paramscope.gui.app.main_window import MainWindow

DEFAULT_SIZE = (1600, 1000)  # a fresh window where the screen has room; smaller screens: see fit_to_screen
NARROW_WIDTH = 1200
TOOL_DOCK_WIDTH = 310  # the Initialize and Backward panels need ~290 px; a little to spare
# Room left around a fresh window on a small screen for the title bar and frame the window manager adds.
FRAME_ALLOWANCE = (16, 48)
MIN_CENTER_WIDTH = 420  # px for the table and plots: narrower, the table shows one column


def fit_to_screen(window: MainWindow) -> None:
    """Size a fresh window to DEFAULT_SIZE or the screen's free area, whichever is smaller, and
    place it inside that area (a 1600x1000 window on a 1280x800 screen hid its right dock).
    """
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return
    area = screen.availableGeometry()
    width = min(DEFAULT_SIZE[0], area.width() - FRAME_ALLOWANCE[0])
    height = min(DEFAULT_SIZE[1], area.height() - FRAME_ALLOWANCE[1])
    window.resize(width, height)
    window.move(
        area.x() + (area.width() - width - FRAME_ALLOWANCE[0]) // 2,
        area.y() + (area.height() - height - FRAME_ALLOWANCE[1]) // 2,
    )


def fit_docks(window: MainWindow) -> None:
    """Share the window's width: tree ~27%, tool panels ~31%, the rest for table and plots."""
    width, height = max(window.width(), 800), max(window.height(), 600)
    # A narrow window gives the tree less, so the plot keeps a usable width (~350 px at 1024).
    tree = int(width * (0.27 if width >= NARROW_WIDTH else 0.21))
    horizontal, vertical = Qt.Orientation.Horizontal, Qt.Orientation.Vertical
    window.resizeDocks([window.tree_dock], [tree], horizontal)
    window.resizeDocks([window.init_dock], [max(int(width * 0.31), TOOL_DOCK_WIDTH)], horizontal)
    window.resizeDocks([window.tree_dock, window.tied_dock], [int(height * 0.6), int(height * 0.3)], vertical)
    window.center.setSizes([int(height * 0.4), int(height * 0.5)])


def fit_docks_if_narrower(window: MainWindow, saved_width: int) -> None:
    """Dock sizes saved in a wider window (another screen) left the table and plots a sliver:
    325 px of a 1280 px window after a session at 1920 px. Then the docks get their fresh
    shares; in a window as wide as when saved, the user's own sizes stay."""
    if window.width() < 0.9 * saved_width and window.centralWidget().width() < MIN_CENTER_WIDTH:
        fit_docks(window)


def reset_layout(window: MainWindow) -> None:
    """Every dock back where a fresh window has it, at its fresh size."""
    for dock in (window.tree_dock, window.tied_dock, window.diagnostics_dock, window.init_dock, window.backward_dock):
        dock.setFloating(False)
        dock.show()
    left, right = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea
    for dock, area in ((window.tree_dock, left), (window.tied_dock, left), (window.init_dock, right), (window.backward_dock, right)):
        window.addDockWidget(area, dock)
    window.splitDockWidget(window.tree_dock, window.tied_dock, Qt.Orientation.Vertical)
    window.tabifyDockWidget(window.tied_dock, window.diagnostics_dock)
    window.tabifyDockWidget(window.init_dock, window.backward_dock)
    window.init_dock.raise_()
    fit_docks(window)
