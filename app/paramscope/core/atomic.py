"""Writing files so that a failure never leaves a half-written target.

Everything paramscope writes (state_dicts, replay scripts, plots, CSV) goes to a temporary file
in the target's folder, is flushed and fsynced, optionally checked, and only then renamed over
the target (``os.replace``, atomic on one file system). On any failure or cancel the temporary
file is removed and the old target, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def file_mode(target: Path) -> int:
    """Keep an existing target's permissions; a new file gets the usual umask-based mode."""
    if target.exists():
        return target.stat().st_mode & 0o7777
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(
    target: Path | str,
    write: Callable[[Path], None],
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Call ``write(tmp)``, fsync, ``check(tmp)``, then rename ``tmp`` over ``target``.

    Args:
        target: the file to create or replace.
        write: writes the whole content to the path it is given.
        check: raises if what was written is not right (e.g. a read-back comparison).

    Raises:
        OSError: the folder is missing or not writable; whatever ``write``/``check`` raise.

    Example:
        >>> write_atomically("notes.txt", lambda tmp: tmp.write_text("hello"))  # doctest: +SKIP
    """
    target = Path(target)
    # The temporary name keeps the target's extension: some writers choose the format by it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode(target))  # mkstemp makes it private (0600)
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def write_text_atomically(target: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` through :func:`write_atomically`."""
    return write_atomically(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
