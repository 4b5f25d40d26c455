"""Progress and cancel for long work, testable without an event loop (Orange3 style).

Long work is a plain function ``run(inputs, state)``; ``state`` reports progress and says
whether the user cancelled. The GUI passes a state backed by a worker thread, tests pass
:class:`TaskState` directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from paramscope.core.errors import Cancelled


class TaskState:
    """Thread-safe progress/cancel state shared between a worker and whoever watches it."""

    def __init__(self, on_progress: Callable[[float, str], None] | None = None) -> None:
        self._cancel = threading.Event()
        self._on_progress = on_progress
        self.fraction = 0.0
        self.message = ""

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the user asked to stop."""
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, fraction: float, message: str = "") -> None:
        self.check()
        self.fraction = max(0.0, min(1.0, fraction))
        self.message = message
        if self._on_progress is not None:
            self._on_progress(self.fraction, message)


def ensure_state(state: TaskState | None) -> TaskState:
    return state if state is not None else TaskState()
