"""The data files a DCP folder's metadata names: inside the folder, regular, long enough.

torch's ``FileSystemReader`` opens ``folder / relative_path`` for each entry (an absolute path
replaces the folder; ``..`` walks out of it), then reads ``length`` bytes from ``offset``. These
checks run on the checked metadata before torch opens anything, and again before each read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from paramscope.core.errors import SourceError, shown


def data_file(folder: Path, relative: str) -> Path:
    """``folder/relative`` where it is a regular file inside ``folder``; else a one-line error.

    Checked before torch opens anything: an absolute or ``..`` path, a symlink out of the folder
    or a FIFO (which would block the reader forever) is refused.
    """
    where = f"{folder}: data file '{shown(relative)}'"
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if not relative or "\x00" in relative or posix.is_absolute() or windows.is_absolute() or windows.drive:
        raise SourceError(f"{where} is not a relative name inside the folder")
    if ".." in posix.parts or ".." in windows.parts:
        raise SourceError(f"{where} leads out of the folder ('..')")
    path = folder / relative
    try:
        real = path.resolve(strict=True)
        inside = real.is_relative_to(folder.resolve(strict=True))
        mode = os.stat(real).st_mode
    except OSError as exc:
        raise SourceError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if not inside:
        raise SourceError(f"{where} is a link out of the folder")
    if not stat.S_ISREG(mode):
        raise SourceError(f"{where} is not a regular file")
    return path


def check_data_files(folder: Path, infos: list[Any]) -> None:
    """Each byte range lies inside its data file (a truncated file is named, not read)."""
    sizes: dict[str, int] = {}
    for info in infos:
        if info.relative_path not in sizes:
            sizes[info.relative_path] = data_file(folder, info.relative_path).stat().st_size
        size, end = sizes[info.relative_path], info.offset + info.length
        if end > size:
            raise SourceError(
                f"{folder / info.relative_path}: holds {size} bytes but the metadata reads up to byte {end} "
                "(truncated, or not this checkpoint's file)"
            )
