"""The splash on screen while torch loads: the icon and one line of text, painted at once.

Not ``QSplashScreen``: in Qt 6.11 its ``show()`` blocks for a second and then, on xcb, the
window is still not exposed (measured offscreen and on Xvfb with openbox). This plain frameless
window is on screen, painted, in ~30 ms. Qt only: it shows before torch is imported.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPixmap
from PySide6.QtWidgets import QApplication, QWidget

ICON_SIZE = 200
WIDTH = 420
TEXT_HEIGHT = 40
# How long to wait for the window system to map the splash before going on without it.
EXPOSE_TIMEOUT_S = 0.3


def _icon() -> QPixmap:
    from paramscope.resources import resource_path

    pixmap = QPixmap()
    try:
        if pixmap.loadFromData(resource_path("icons/paramscope.svg").read_bytes()):
            return pixmap.scaled(
                ICON_SIZE,
                ICON_SIZE,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
    except OSError:
        pass
    return QPixmap()  # a missing icon leaves the text alone, never an error


class Splash(QWidget):
    """A frameless window with the app's icon and ``message`` (elided in the middle)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint)
        self.setObjectName("paramscopeSplash")
        self.message = message
        self.icon = _icon()
        self.setFixedSize(WIDTH, ICON_SIZE + TEXT_HEIGHT + 20)
        screen = QApplication.primaryScreen()
        if screen is not None:
            self.move(screen.availableGeometry().center() - self.rect().center())

    def paintEvent(self, _event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if not self.icon.isNull():
            painter.drawPixmap((self.width() - self.icon.width()) // 2, 10, self.icon)
        text = QRect(10, ICON_SIZE + 20, self.width() - 20, TEXT_HEIGHT)
        shown = painter.fontMetrics().elidedText(
            self.message, Qt.TextElideMode.ElideMiddle, text.width()
        )
        painter.setPen(self.palette().windowText().color())
        painter.drawText(text, Qt.AlignmentFlag.AlignCenter, shown)

    def show_now(self) -> None:
        """Show and paint before returning (the caller then blocks for seconds importing torch)."""
        self.show()
        deadline = time.monotonic() + EXPOSE_TIMEOUT_S
        while True:  # events are processed once more after the last sleep, however long it took
            QApplication.processEvents()
            handle = self.windowHandle()
            if (handle is not None and handle.isExposed()) or time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        self.repaint()
