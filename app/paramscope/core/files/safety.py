"""Refusals and size checks: what keeps a viewer safe from other people's files.

Every problem becomes a one-line :class:`~paramscope.core.errors.SourceError` that names the file
and the problem. Files that would run code when loaded raise :class:`UntrustedFileError`, which
the command line answers with a hint about ``--trust`` and the GUI with a confirmation dialog.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from paramscope.core.errors import SourceError

GIT_LFS_PREFIX = b"version https://git-lfs.github.com/spec/"


class UntrustedFileError(SourceError):
    """Opening ``path`` needs code from the file to run; only with the user's consent (trust).

    Attributes:
        path: the file.
        risk: what loading it would do, in a short phrase, for a confirmation dialog.
    """

    def __init__(self, path: Path, risk: str, what: str = "") -> None:
        self.path = Path(path)
        self.risk = risk
        lead = f"{path}: {what}; " if what else f"{path}: "
        super().__init__(
            f"{lead}{risk}. Open it only if you trust where it came from: "
            "add --trust on the command line, or confirm in the dialog"
        )


def bad_file(path: Path | str, problem: str) -> SourceError:
    """The one-line error for a file that cannot be read as a model."""
    return SourceError(f"{path}: {problem}")


def human_bytes(n: int | float) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover


def available_memory() -> int:
    """Bytes of memory available for new data now (tests monkeypatch this)."""
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits_memory(path: Path, declared: int, what: str = "tensor data") -> None:
    """Refuse before allocating when ``declared`` bytes cannot fit in available memory."""
    free = available_memory()
    if declared > free:
        raise bad_file(
            path,
            f"declares {human_bytes(declared)} of {what}, more than the "
            f"{human_bytes(free)} of memory available; refusing to load it",
        )


def check_readable_file(path: Path) -> int:
    """Check that ``path`` is a readable, non-empty regular file; return its size."""
    if not path.exists():
        raise bad_file(path, "no such file")
    if path.is_dir():
        raise bad_file(path, "is a folder, not a model file (open a weights file or the *.index.json inside)")
    if not path.is_file():
        raise bad_file(path, "is not a regular file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        raise bad_file(path, "permission denied: cannot read it") from None
    except OSError as exc:
        raise bad_file(path, f"cannot read it: {exc.strerror or exc}") from None
    size = path.stat().st_size
    if size == 0:
        raise bad_file(path, "is empty (0 bytes)")
    return size


def check_inside(folder: Path, name: str, index: Path) -> Path:
    """Shard ``name`` of ``index`` as a path in ``folder``; refuse names that lead outside it.

    Judged by the name, not by where a link in the folder points: the Hugging Face cache keeps
    each file of a snapshot as a link into the repository's ``blobs`` folder. (What a link
    points to must still be a regular file: see :func:`check_readable_file`.)
    """
    if not name or os.path.isabs(name) or "\\" in name:
        raise bad_file(index, f"shard name {name!r} is not a plain file name inside {folder}")
    try:
        (folder / name).resolve()
    except (ValueError, OSError) as exc:  # a null byte, a name too long for the file system
        raise bad_file(index, f"shard name {name[:80]!r} is not a usable file name ({first_line(exc)})") from None
    if ".." in PurePosixPath(name).parts:
        raise bad_file(index, f"shard name {name!r} points outside the checkpoint's folder; refusing it")
    return folder / name


def first_line(exc: BaseException) -> str:
    """A torch/pickle error reduced to one line, without torch's advice to load unsafely."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "weights_only" in text or "Weights only" in text:
        return "its contents are not a plain state_dict"
    return text[:200]
