"""Writing files so that a failure never leaves a half-written target.

Everything paramscope writes (state_dicts, replay scripts, plots, CSV) goes to a temporary file
in the target's folder, is optionally checked, and only then renamed over the target
(``os.replace``, atomic on one file system). On any failure, kill or cancel the temporary file is
removed and the old target, if any, is untouched.

A kill (SIGKILL, power cut) cannot remove anything, so temporaries are named
``.TARGET.paramscope-PID-RANDOM.tmpSUFFIX``: the next write into the same folder recognises those
of earlier runs (same user; the writing process gone, or its pid now used by a process started
after the file was last written) and removes them. A live writer's temporary is never touched.

With ``sync`` (the default for small files; an option for state_dict exports, where it costs
about a second per GB on these disks) the file is also flushed to disk (fsync) before the rename,
so that even a power cut leaves the old or the new file. Large files are written through
:class:`UnbufferedFile`, straight from the caller's memory (no copy of the whole file).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

_MAX_WRITE = 1 << 30  # one write() call: Linux moves at most ~2 GiB per call anyway


def file_mode(target: Path) -> int:
    """Keep an existing target's permissions; a new file gets the usual umask-based mode."""
    if target.exists():
        return target.stat().st_mode & 0o7777
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


TEMP_MARK = ".paramscope-"
# .TARGET.paramscope-PID-RANDOM.tmpSUFFIX (mkstemp's random part: letters, digits, underscore)
_TEMP_NAME = re.compile(r"^\..+\.paramscope-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.tmp(\.[^.]*)?$")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def temporary_prefix(target: Path) -> str:
    """The start of this process's temporary names for ``target`` (hidden, pid inside)."""
    return f".{target.name[:120]}{TEMP_MARK}{os.getpid()}-"  # within NAME_MAX with the rest


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds); None: gone, a zombie, or unknown here."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rpartition(")")[2].split()  # the name may hold spaces
    except OSError:
        return None
    boot = _boot_time()
    if len(fields) < 20 or fields[0] in ("Z", "X") or boot is None:
        return None
    return boot + int(fields[19]) / _CLOCK_TICKS


def _writer_alive(pid: int, written: float) -> bool:
    """Whether the process that last wrote a temporary at ``written`` may still be writing it."""
    if os.path.isdir("/proc/self"):
        started = process_start(pid)
        # a process started after the file's last write reuses the pid: the writer is gone
        # (1 s of slack: start times count in clock ticks, mtimes may be coarse)
        return started is not None and started <= written + 1.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal, or the platform cannot tell: keep it
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove temporaries that killed earlier writes left in ``folder``; returns those removed.

    Only regular files of this user whose name says paramscope made them, and whose writer is
    gone. Never raises: cleaning up must not stop the write that asked for it.
    """
    removed: list[Path] = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name) if TEMP_MARK in entry.name else None
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or (uid is not None and info.st_uid != uid):
                continue
            if _writer_alive(int(match["pid"]), info.st_mtime):
                continue
            os.unlink(entry.path)
        except (OSError, ValueError):
            continue
        removed.append(Path(entry.path))
    return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class UnbufferedFile:
    """A write-only file (created or truncated) that writes straight from the caller's buffer.

    No copy: it accepts anything with the buffer protocol, so ``torch.save`` and the safetensors
    writer hand it each tensor's own memory. :attr:`error` keeps the first failed write, because
    ``torch.save`` wraps it in an error of its own.
    """

    def __init__(self, path: Path | str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self.fd = os.open(path, flags, 0o666)
        # Not O_TRUNC on the (empty) temporary file: ext4 takes truncate-then-write for an
        # in-place replace and flushes the whole file to disk on close (~0.2 s per 500 MB here).
        try:
            if os.fstat(self.fd).st_size:
                os.ftruncate(self.fd, 0)
        except OSError:
            os.close(self.fd)
            raise
        self.position = 0
        self.error: OSError | None = None  # the first failed write: callers may see it wrapped

    def write(self, data: Buffer) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            try:
                written = self._write_some(view[:_MAX_WRITE])
            except OSError as exc:
                self.error = self.error or exc
                raise
            view = view[written:]
            self.position += written
        return total

    def _write_some(self, view: memoryview) -> int:
        return os.write(self.fd, view)

    def flush(self) -> None:
        """Nothing is buffered here; torch.save calls it."""

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> UnbufferedFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def write_atomically(
    target: Path | str,
    write: Callable[[Path], None],
    check: Callable[[Path], None] | None = None,
    sync: bool = True,
) -> Path:
    """Call ``write(tmp)``, ``check(tmp)``, fsync (with ``sync``), then rename ``tmp`` over ``target``.

    The check runs before the fsync: it reads the page cache, which holds exactly the bytes the
    fsync puts on disk.

    Args:
        target: the file to create or replace.
        write: writes the whole content to the path it is given.
        check: raises if what was written is not right (e.g. a read-back comparison).
        sync: wait until the bytes are on disk before renaming (survives a power cut, not only
            a failure or kill of the process).

    Raises:
        OSError: the folder is missing or not writable; whatever ``write``/``check`` raise.

    Example:
        >>> write_atomically("notes.txt", lambda tmp: tmp.write_text("hello"))  # doctest: +SKIP
    """
    target = Path(target)
    # The temporary name keeps the target's extension: some writers choose the format by it.
    remove_stale_temporaries(target.parent)
    fd, tmp_name = tempfile.mkstemp(
        prefix=temporary_prefix(target), suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if check is not None:
            check(tmp)
        if sync:
            _fsync_file(tmp)
        os.chmod(tmp, file_mode(target))  # mkstemp makes it private (0600)
        os.replace(tmp, target)
        if sync:
            _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target


def write_text_atomically(target: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` through :func:`write_atomically`."""
    return write_atomically(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
