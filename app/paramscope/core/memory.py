"""Refuse to allocate what the machine cannot hold, before allocating it."""

from __future__ import annotations

from pathlib import Path

import psutil

from paramscope.core.errors import SourceError

# Keep some memory for the app itself and the rest of the machine.
HEADROOM_FRACTION = 0.9


def available_bytes() -> int:
    return int(psutil.virtual_memory().available * HEADROOM_FRACTION)


def ensure_fits(nbytes: int, where: Path | str) -> None:
    """Raise a one-line :class:`SourceError` if ``nbytes`` would not fit in available memory."""
    available = available_bytes()
    if nbytes > available:
        raise SourceError(
            f"{where}: needs {format_bytes(nbytes)} but only {format_bytes(available)} of memory is "
            "available; refused before allocating"
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
