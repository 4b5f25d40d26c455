"""Progress and cancel for long work, testable without an event loop (Orange3 style).

Long work is a plain function ``run(inputs, state)``; ``state`` reports progress and says
whether the user cancelled. The GUI passes a state backed by a worker thread, tests pass
:class:`TaskState` directly.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

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


class SliceState(TaskState):
    """Progress of one step mapped onto ``[lo, hi]`` of an outer state; cancel is the outer's."""

    def __init__(self, outer: TaskState, lo: float, hi: float) -> None:
        super().__init__()
        self._outer, self._lo, self._hi = outer, lo, hi

    def cancel(self) -> None:
        self._outer.cancel()

    @property
    def cancelled(self) -> bool:
        return self._outer.cancelled

    def check(self) -> None:
        self._outer.check()

    def progress(self, fraction: float, message: str = "") -> None:
        fraction = max(0.0, min(1.0, fraction))
        self.fraction, self.message = fraction, message
        self._outer.progress(self._lo + (self._hi - self._lo) * fraction, message)


def ensure_state(state: TaskState | None) -> TaskState:
    return state if state is not None else TaskState()


def advance(state: TaskState | None, fraction: float, message: str) -> None:
    """``state.progress(fraction, message)`` unless nobody watches (None)."""
    if state is not None:
        state.progress(fraction, message)


def part(state: TaskState | None, lo: float, hi: float) -> TaskState | None:
    """``state``'s ``[lo, hi]`` for one step of a longer task (None stays None: nobody watches)."""
    return None if state is None else SliceState(state, lo, hi)


Item = TypeVar("Item")

# Items between two progress reports of :func:`steps`: a report costs a few microseconds, an
# item of a checkpoint's million tiny tensors about ten.
STEP_STRIDE = 4096


def steps(items: Iterable[Item], total: int, state: TaskState | None, message: str) -> Iterable[Item]:
    """``items``, reporting to ``state`` (and so stopping on cancel) every :data:`STEP_STRIDE`.

    For loops over a checkpoint's tensors: opening a million of them takes half a minute, and
    a cancelled open must stop within a fraction of a second, not at the end. Nobody watching
    (None): ``items`` themselves.
    """
    return items if state is None else _reporting(iter(items), total, state, message)


def _reporting(items: Iterator[Item], total: int, state: TaskState, message: str) -> Iterator[Item]:
    done = 0
    while chunk := list(itertools.islice(items, STEP_STRIDE)):  # (a chunk at a time: ~10 ns an item)
        state.progress(done / total if total else 0.0, message)
        yield from chunk
        done += len(chunk)
