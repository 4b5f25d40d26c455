"""Light, dark or the system's look for the whole window, chosen in View and remembered.

Qt-only (the splash uses it before torch loads). Light and dark are explicit palettes on the
Fusion style, because native styles ignore palettes; *system* is the style and palette the
platform gave at start. Plots take their colours from the palette (see :mod:`palette`), told
through :func:`on_theme_changed`.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = {"system": "System", "light": "Light", "dark": "Dark"}
THEME_KEY = "view/theme"
_listeners: list[Callable[[], object]] = []
_platform: dict[str, object] = {}  # the style name and palette before any theme was applied


def saved_theme() -> str:
    value = str(QSettings().value(THEME_KEY, "system"))
    return value if value in THEMES else "system"


def current_theme(app: QGuiApplication | None = None) -> str:
    app = app or QGuiApplication.instance()
    value = app.property("paramscopeTheme") if app is not None else None
    return str(value) if value in THEMES else "system"


def on_theme_changed(listener: Callable[[], object]) -> None:
    """Call ``listener()`` after every theme change (the plots restyle themselves)."""
    if listener not in _listeners:
        _listeners.append(listener)


def _roles(window: str, base: str, alternate: str, text: str, button: str, mid: str, disabled: str) -> QPalette:
    role = QPalette.ColorRole
    palette = QPalette()
    for name, color in (
        (role.Window, window), (role.Base, base), (role.AlternateBase, alternate), (role.Button, button),
        (role.WindowText, text), (role.Text, text), (role.ButtonText, text), (role.ToolTipBase, base),
        (role.ToolTipText, text), (role.PlaceholderText, disabled), (role.Mid, mid), (role.Dark, mid),
    ):  # fmt: skip
        palette.setColor(name, QColor(color))
    palette.setColor(role.Highlight, QColor("#2f6fd0"))
    palette.setColor(role.HighlightedText, QColor("#ffffff"))
    palette.setColor(role.Link, QColor("#3d8ee8"))
    for name in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, name, QColor(disabled))
    return palette


def theme_palette(name: str) -> QPalette:
    """The explicit palette of ``light`` or ``dark``."""
    if name == "dark":
        return _roles("#2b2b2b", "#1e1e1e", "#262626", "#dcdcdc", "#353535", "#4a4a4a", "#7f7f7f")
    return _roles("#efefef", "#ffffff", "#f5f5f5", "#1a1a1a", "#e6e6e6", "#b8b8b8", "#8a8a8a")


def apply_theme(app: QApplication, name: str) -> None:
    """Switch widgets (and, through the listeners, plots) to ``name``: system, light or dark."""
    name = name if name in THEMES else "system"
    if not _platform:
        _platform["style"] = app.style().name()
        _platform["palette"] = QPalette(app.palette())
    hints = app.styleHints()
    if name == "system":
        app.setStyle(str(_platform["style"]))
        app.setPalette(QPalette(_platform["palette"]))  # type: ignore[arg-type]
        if hasattr(hints, "unsetColorScheme"):
            hints.unsetColorScheme()
    else:
        app.setStyle("Fusion")
        app.setPalette(theme_palette(name))
        if hasattr(hints, "setColorScheme"):  # title bars on platforms that follow it
            hints.setColorScheme(Qt.ColorScheme.Dark if name == "dark" else Qt.ColorScheme.Light)
    app.setProperty("paramscopeTheme", name)
    for listener in list(_listeners):
        listener()


def apply_saved_theme(app: QApplication) -> None:
    """At start: the theme chosen last time (system when none)."""
    name = saved_theme()
    if name != "system":
        apply_theme(app, name)
    else:
        app.setProperty("paramscopeTheme", "system")


def choose_theme(name: str) -> None:
    """From the View menu: apply and remember."""
    app = QApplication.instance()
    if isinstance(app, QApplication):
        apply_theme(app, name)
    QSettings().setValue(THEME_KEY, name)
