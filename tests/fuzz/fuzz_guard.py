"""Shared checks for the fuzz tests: a clean error and no hang."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from paramscope.core.errors import ParamscopeError

HANG_SECONDS = 10.0


class Hang(BaseException):
    """Raised by the alarm: deriving from BaseException so no parser's ``except`` can eat it."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Fail (with :class:`Hang`) when the body runs longer than ``seconds`` of wall clock."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_clean_outcome(exc: ParamscopeError) -> None:
    """A user-facing error: a non-empty single line."""
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in message, message
