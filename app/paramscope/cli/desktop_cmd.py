"""``paramscope desktop [install|remove]``: the window in the desktop's menu, and checkpoints that
open in it from the file manager.

What the freedesktop.org specifications (Desktop Entry, Icon Theme, Shared MIME-info) read, for
this user, under ``$XDG_DATA_HOME`` (``~/.local/share``): ``applications/paramscope.desktop``,
``icons/hicolor/scalable/apps/paramscope.svg`` and ``mime/packages/paramscope.xml`` (types for
``*.safetensors`` and ``*.pt``, ``*.pth``, ``*.ckpt``, which no other package names); then the
desktop's caches are refreshed where their tools are installed. The entry runs the Python
paramscope is installed in (a virtual environment is not on the desktop's PATH); files given to
it open as on the command line: one opens as the model, several as a series.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ENTRY = Path("applications/paramscope.desktop")
ICON = Path("icons/hicolor/scalable/apps/paramscope.svg")
MIME = Path("mime/packages/paramscope.xml")

# type -> (comment, file name patterns)
MIME_TYPES = {
    "application/x-safetensors": ("safetensors tensors", ("*.safetensors",)),
    "application/x-pytorch-checkpoint": ("PyTorch checkpoint", ("*.pt", "*.pth", "*.ckpt")),
}

# characters the Desktop Entry spec reserves in an Exec argument: such an argument is quoted
_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", choices=("install", "remove"), default="install",
        help="install (default): add the menu entry, icon and file types for this user; remove: take them away",
    )  # fmt: skip


def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` where it is unset or not absolute (as the spec says)."""
    value = os.environ.get("XDG_DATA_HOME", "")
    return Path(value) if os.path.isabs(value) else Path.home() / ".local" / "share"


def exec_argument(argument: str) -> str:
    """One argument of an Exec key: quoted where the spec requires, ``%`` doubled, and its
    backslashes escaped once more for the key's string value.

    Example:
        >>> exec_argument("/usr/bin/python3")
        '/usr/bin/python3'
        >>> exec_argument("/home/me/my env/bin/python")
        '"/home/me/my env/bin/python"'
    """
    argument = argument.replace("%", "%%")
    if not _RESERVED.intersection(argument):
        return argument
    quoted = "".join("\\" + c if c in '"`$\\' else c for c in argument)
    return '"' + quoted.replace("\\", "\\\\") + '"'


def desktop_entry(python: str) -> str:
    """The menu entry that runs ``python -m paramscope`` on the files it is given."""
    command = " ".join(exec_argument(a) for a in (python, "-m", "paramscope"))
    types = "".join(f"{name};" for name in MIME_TYPES)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=paramscope\n"
        "GenericName=PyTorch parameter explorer\n"
        "Comment=See, re-initialize, check and export the parameters of PyTorch models\n"
        f"TryExec={exec_argument(python)}\n"
        f"Exec={command} %F\n"
        "Icon=paramscope\n"
        "Terminal=false\n"
        "Categories=Science;ArtificialIntelligence;DataVisualization;\n"
        f"MimeType={types}\n"
        "StartupWMClass=paramscope\n"
        "Keywords=pytorch;torch;weights;checkpoint;safetensors;model;\n"
    )


def mime_package() -> str:
    """The shared MIME-info package naming the checkpoint types by their file names."""
    entries = []
    for name, (comment, patterns) in MIME_TYPES.items():
        globs = "".join(f'\n    <glob pattern="{pattern}"/>' for pattern in patterns)
        entries.append(f'  <mime-type type="{name}">\n    <comment>{comment}</comment>{globs}\n  </mime-type>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">\n'
        + "\n".join(entries)
        + "\n</mime-info>\n"
    )


def install(home: Path, python: str) -> list[Path]:
    """Write the entry, icon and MIME package under ``home``; refresh the caches. Returns the files."""
    from paramscope.core.files.atomic import write_atomically, write_text_atomically
    from paramscope.resources import resource_path

    written = []
    for relative, text in ((ENTRY, desktop_entry(python)), (MIME, mime_package())):
        (home / relative).parent.mkdir(parents=True, exist_ok=True)
        written.append(write_text_atomically(home / relative, text))
    (home / ICON).parent.mkdir(parents=True, exist_ok=True)
    icon = resource_path("icons/paramscope.svg").read_bytes()
    write_atomically(home / ICON, lambda tmp: tmp.write_bytes(icon))
    written.append(home / ICON)
    _refresh(home)
    return written


def remove(home: Path) -> list[Path]:
    """Delete what :func:`install` wrote under ``home``; refresh the caches. Returns the files removed."""
    removed = []
    for relative in (ENTRY, ICON, MIME):
        path = home / relative
        if path.exists():
            path.unlink()
            removed.append(path)
    _refresh(home)
    return removed


def _refresh(home: Path) -> list[str]:
    """Run the desktop's cache tools that are installed (the file types need update-mime-database)."""
    ran = []
    for tool, folder in (("update-mime-database", home / "mime"), ("update-desktop-database", home / "applications")):
        found = shutil.which(tool)
        if found and folder.is_dir():
            subprocess.run([found, str(folder)], capture_output=True, check=False, timeout=120)
            ran.append(tool)
    return ran


def run(args: argparse.Namespace) -> int:
    from paramscope.core.errors import ParamscopeError

    if sys.platform.startswith(("win", "darwin")):
        raise ParamscopeError(
            "paramscope desktop writes a freedesktop.org menu entry (Linux and BSD desktops); "
            "on this system start the window with the paramscope command"
        )
    home = data_home()
    try:
        if args.action == "remove":
            removed = remove(home)
            print("\n".join(f"removed {path}" for path in removed) or f"nothing to remove under {home}")
            return 0
        written = install(home, sys.executable)
    except OSError as exc:
        where = exc.filename or home
        raise ParamscopeError(f"{where}: cannot {args.action} the desktop entry there ({exc.strerror or exc}); set XDG_DATA_HOME to a folder you can write") from None
    for path in written:
        print(f"wrote {path}")
    if shutil.which("update-mime-database") is None:
        print("update-mime-database is not installed (package shared-mime-info): checkpoints will not be offered to paramscope until it runs")
    print("paramscope is in the desktop's menu (Science); checkpoints open in it from the file manager")
    return 0
