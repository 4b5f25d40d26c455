"""Byte ranges fetched from remote checkpoints, kept on disk under a size limit.

Where and how much: ``--cache-dir``/``--cache-size`` on the command line, which set
``PARAMSCOPE_CACHE_DIR``/``PARAMSCOPE_CACHE_BYTES`` (so Dask workers started here inherit them);
default ``~/.cache/paramscope/ranges`` (``$XDG_CACHE_HOME`` honoured), 2 GiB; a size of 0 turns
the cache off. ``paramscope cache info|clear`` shows and empties it. Only files named like the
cache's own entries are ever counted or deleted, so a folder given by mistake (``~``) loses nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

from paramscope.core.errors import SourceError
from paramscope.core.files.remote_io import RemoteStamp

DEFAULT_CACHE_BYTES = 2 << 30
DIR_VARIABLE = "PARAMSCOPE_CACHE_DIR"
SIZE_VARIABLE = "PARAMSCOPE_CACHE_BYTES"
_ENTRY = re.compile(r"[0-9a-f]{64}\.bin")
_LEFTOVER = re.compile(r"\.[0-9a-f]{64}\.\d+\.\d+\.tmp")  # a write cut short (killed)
_SIZE = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(?:e\d+)?)\s*([kmgtp]?)(i?)b?", re.IGNORECASE)


def parse_size(text: str, what: str = "--cache-size") -> int:
    """Bytes in ``2GB``, ``500MiB``, ``1.5G``, ``0`` or ``2147483648`` (GB = 10^9, GiB = 2^30)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise SourceError(f"{what} {text!r}: not a size (e.g. 2GB, 500MiB, 0 for no cache)")
    number, unit, binary = match.groups()
    power = "kmgtp".find(unit.lower()) + 1 if unit else 0
    return int(float(number) * (1024 if binary or not unit else 1000) ** power)


def default_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "paramscope" / "ranges"


class RangeCache:
    """Fetched ranges on disk, least recently used dropped first above ``limit`` bytes.

    Keys hash the URL without credentials or query, the file's version and the range, so a
    replaced file never reads its old bytes and nothing secret is written. ``limit`` 0: off.
    """

    def __init__(self, folder: Path | None, limit: int) -> None:
        self.folder = folder
        self.limit = max(0, limit) if folder is not None else 0
        self._used: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> RangeCache:
        """The cache ``PARAMSCOPE_CACHE_DIR`` and ``PARAMSCOPE_CACHE_BYTES`` say (see the module)."""
        folder = os.environ.get(DIR_VARIABLE)
        text = os.environ.get(SIZE_VARIABLE, "").strip()
        limit = parse_size(text, SIZE_VARIABLE) if text else DEFAULT_CACHE_BYTES
        return cls(Path(folder).expanduser() if folder else default_folder(), limit)

    @staticmethod
    def key(url: str, stamp: RemoteStamp, start: int, stop: int) -> str:
        parts = urlsplit(url)
        where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        text = "\0".join(map(str, (where, stamp.size, stamp.etag, stamp.modified, start, stop)))
        return hashlib.sha256(text.encode("utf-8", "backslashreplace")).hexdigest()

    def get_into(self, key: str, target: memoryview) -> bool:
        """Whether the range ``key`` was cached (then it is in ``target``)."""
        if not self.limit or self.folder is None:
            return False
        path = self.folder / f"{key}.bin"
        try:
            with open(path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size != len(target) or handle.readinto(target) != len(target):
                    return False
            os.utime(path)  # recently used: evicted last
        except OSError:
            return False
        return True

    def put(self, key: str, data: bytes | memoryview) -> None:
        if not self.limit or self.folder is None or len(data) > self.limit:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = self.folder / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
            temporary.write_bytes(data)
            os.replace(temporary, self.folder / f"{key}.bin")
        except OSError:
            return  # a full or read-only disk costs the cache, not the reading
        with self._lock:  # a tensor's pieces arrive from several threads
            self._used = (self._used if self._used is not None else self.usage()[1]) + len(data)
            if self._used > self.limit:
                self._evict()

    def usage(self) -> tuple[int, int]:
        """(ranges, bytes) in the folder now."""
        entries = self._entries()
        return len(entries), sum(size for _, size, _ in entries)

    def clear(self) -> tuple[int, int]:
        """Delete every cached range (and writes left by a killed run): (ranges, bytes) freed."""
        count = freed = 0
        for _, size, path in self._entries(leftovers=True):
            try:
                path.unlink()
            except OSError:
                continue
            count, freed = count + (not path.name.startswith(".")), freed + size
        self._used = None
        return count, freed

    def _entries(self, leftovers: bool = False) -> list[tuple[float, int, Path]]:
        entries = []
        try:
            names = os.listdir(self.folder) if self.folder is not None else []
        except OSError:
            names = []
        for name in names:
            if not (_ENTRY.fullmatch(name) or (leftovers and _LEFTOVER.fullmatch(name))):
                continue
            path = self.folder / name  # type: ignore[operator]
            try:
                info = path.lstat()
            except OSError:
                continue
            entries.append((info.st_mtime, info.st_size, path))
        return entries

    def _evict(self) -> None:
        entries = sorted(self._entries())
        used = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if used <= self.limit:
                break
            try:
                path.unlink()
            except OSError:
                continue
            used -= size
        self._used = used
