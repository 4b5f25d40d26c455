"""The first thing a user sees: a splash shown before torch is imported (which takes seconds).

This module imports only Qt. It puts up the splash, then imports the rest of the app (torch,
the core, the main window) and hands over to :func:`paramscope.gui.app.run_app`.
"""

from __future__ import annotations

import sys


def launch(source: str, weights: str | None = None, trust: bool = False, screenshot: str | None = None) -> int:
    if screenshot is not None:  # no splash in a screenshot
        from paramscope.gui.app import run_app

        return run_app(source, weights=weights, trust=trust, screenshot=screenshot)

    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QApplication, QSplashScreen

    app = QApplication.instance() or QApplication(sys.argv[:1])
    splash = QSplashScreen(_splash_pixmap(QPixmap))
    splash.showMessage(
        f"paramscope — loading torch to open {source}…",
        Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignHCenter,
    )
    splash.show()
    app.processEvents()

    from paramscope.gui.app import run_app  # torch and the core load here, behind the splash

    return run_app(source, weights=weights, trust=trust, on_shown=splash.close)


def _splash_pixmap(pixmap_type: type) -> object:
    from paramscope.resources import resource_path

    pixmap = pixmap_type(420, 220)
    try:
        loaded = pixmap_type()
        if loaded.loadFromData(resource_path("icons/paramscope.svg").read_bytes()):
            return loaded.scaled(220, 220)
    except OSError:
        pass
    pixmap.fill()
    return pixmap
