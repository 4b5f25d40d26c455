"""The first thing a user sees: a splash shown before torch is imported (which takes seconds).

This module imports only Qt. It holds the one application set-up every entry point goes
through (:func:`make_application`: names for QSettings, icon, stylesheet, theme), puts up the
splash, then imports the rest of the app (torch, the core, the main window) and hands over to
:func:`paramscope.gui.app.app.run_app`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from paramscope.core.errors import ParamscopeError

# Shared libraries Qt's xcb platform plugin links to, and the Debian/Ubuntu packages holding them.
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}
# The packages a bare Debian lacks most often: named in the README and in the message.
USUAL_PACKAGES = "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1"


NO_DISPLAY = (
    "no display to open the window on (DISPLAY is not set): run it in a desktop session or over "
    "ssh -X, or use the command line (paramscope inspect SOURCE; paramscope --help)"
)


def display_reachable(display: str, timeout_s: float = 2.0) -> bool | None:
    """Whether an X server listens at ``display`` (``:0``, ``unix:0``, ``localhost:10.0``);
    None where the form is one this does not know (then Qt tries). Nothing is sent."""
    import re
    import socket

    found = re.fullmatch(r"(?:([A-Za-z0-9.\-]*)|\[([0-9A-Fa-f:.]+)\]):(\d+)(?:\.\d+)?", display)
    if found is None:
        return None
    host, number = found.group(1) or found.group(2) or "", int(found.group(3))
    try:
        if host in ("", "unix"):
            for address in (f"\0/tmp/.X11-unix/X{number}", f"/tmp/.X11-unix/X{number}"):  # abstract first
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
                    unix.settimeout(timeout_s)
                    if unix.connect_ex(address) == 0:
                        return True
            return False
        with socket.create_connection((host, 6000 + number), timeout=timeout_s):
            return True
    except OSError:
        return False


def missing_from_ldd(ldd_output: str) -> list[str]:
    """The library names ``ldd`` reports as ``not found``, each once, in order."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if rest.strip() == "not found" and name not in missing:
            missing.append(name)
    return missing


def missing_libraries_message(missing: list[str]) -> str:
    """One line naming the packages to install for the missing libraries."""
    packages = " ".join(dict.fromkeys(XCB_PACKAGES.get(name, name) for name in missing))
    return (
        f"Qt cannot load its xcb platform plugin: {', '.join(missing)} not installed; "
        f"on Debian/Ubuntu: sudo apt-get install {packages} "
        "(or QT_QPA_PLATFORM=offscreen for no window)"
    )


def _uses_xcb() -> bool:
    """Whether Qt will load the xcb plugin: Linux, no other platform asked for, not on Wayland."""
    if not sys.platform.startswith("linux"):
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if platform:
        return platform == "xcb"
    return not os.environ.get("WAYLAND_DISPLAY")


def check_platform_plugin() -> None:
    """Raise ParamscopeError naming the packages when the xcb plugin's libraries are missing.

    Without this Qt prints a screenful and aborts the process (no exception to catch). ``ldd``
    on the plugin lists every missing library at once; where ``ldd`` itself is absent, Qt speaks.
    """
    if not _uses_xcb():
        return
    display = os.environ.get("DISPLAY", "")
    if not display:  # over ssh without -X: Qt aborted, blaming xcb-cursor0
        raise ParamscopeError(NO_DISPLAY)
    if display_reachable(display) is False:  # a stale DISPLAY (tmux after the ssh session ended)
        raise ParamscopeError(
            f"cannot connect to the display {display!r} (DISPLAY): no X server answers there (an ssh -X "
            "session that has ended?); start it from a desktop or a new ssh -X session, or use the command "
            "line (paramscope --help)"
        )
    from PySide6.QtCore import QLibraryInfo

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    if not plugin.is_file():
        return
    try:
        done = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return
    missing = missing_from_ldd(done.stdout)
    if missing:
        raise ParamscopeError(missing_libraries_message(missing))


def make_application():
    """The running QApplication, or a new one with paramscope's names, icon, stylesheet and theme.

    Every entry point (``paramscope``, ``paramscope FILE``, ``python -m paramscope``,
    ``explore()``, ``--screenshot``) comes through here, so the window looks the same and
    settings are stored under ``paramscope/paramscope``. A host's own QApplication is left as it is.
    """
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        return app
    check_platform_plugin()
    QApplication.setOrganizationName("paramscope")
    QApplication.setApplicationName("paramscope")
    # "paramscope", not argv[0]: X11 names the window's class by it (``python -m paramscope`` gave
    # "__main__.py"), and the desktop groups windows under the menu entry (paramscope desktop) by it
    app = QApplication(["paramscope"])
    app.setApplicationDisplayName("paramscope")
    app.setDesktopFileName("paramscope")  # Wayland: the window's app id, the entry's file name
    app.setProperty("paramscopeLook", True)  # ours: the theme and stylesheet may change it later
    _apply_assets(app)
    from paramscope.gui.theme import apply_saved_theme

    apply_saved_theme(app)
    return app


def _apply_assets(app) -> None:
    """Icon and stylesheet; a missing asset makes the app plainer, not broken."""
    from PySide6.QtGui import QIcon, QPixmap

    from paramscope.resources import resource_path

    try:
        pixmap = QPixmap()
        if pixmap.loadFromData(resource_path("icons/paramscope.svg").read_bytes()):
            app.setWindowIcon(QIcon(pixmap))
        app.setStyleSheet(resource_path("style.qss").read_text(encoding="utf-8"))
    except OSError:
        pass


def launch(
    source: str,
    weights: str | None = None,
    trust: bool = False,
    screenshot: str | None = None,
    options: dict[str, str | None] | None = None,
    series: list[str] | None = None,
) -> int:
    """Open the window on ``source``. ``options``: ``strip_prefix``, ``entry``, ``weights_entry``
    as :func:`paramscope.core.sources.sources.open_source` takes them. ``series``: open the Series view on
    these checkpoints instead, and the latest of them as the model."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if screenshot is not None:  # no splash in a screenshot
        from paramscope.gui.app.app import run_app

        return run_app(source, weights=weights, trust=trust, screenshot=screenshot, **options)

    import gc

    # Start-up makes ~10^5 long-lived objects (torch, Qt, the app's modules) and, with PySide6
    # loaded, a full collection walking them costs ~0.15 s (~0.05 s without it): several ran
    # during the imports. None until the window is up; run_app freezes what start-up made and
    # turns collection back on once the first model has opened.
    gc.disable()
    from paramscope.gui.app.splash import Splash

    make_application()
    splash = Splash(f"paramscope — loading torch to open {'a series' if series else source}…")
    splash.show_now()

    from paramscope.gui.app.app import run_app  # torch and the core load here, behind the splash

    if series:
        return run_app(source, trust=trust, on_shown=splash.close, series=series)
    return run_app(source, weights=weights, trust=trust, on_shown=splash.close, **options)

