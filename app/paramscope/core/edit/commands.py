"""A Qt-free undo stack (glue style): every change to a model is a command object.

The GUI's undo/redo actions call :meth:`CommandStack.undo` / :meth:`CommandStack.redo`; the
command line and scripts use the same commands. Memory for undo is bounded: when the snapshots
kept exceed ``limit_bytes`` the oldest commands are dropped (and can no longer be undone).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch

from paramscope.core.errors import ParamscopeError, listed
from paramscope.core.tasks import TaskState

DEFAULT_UNDO_LIMIT = 512 * 1024 * 1024

#: ``tensor_of(canonical name)``: the tensor a change writes to.
TensorOf = Callable[[str], torch.Tensor]


class StaleEditError(ParamscopeError):
    """A staged edit whose targets changed after it was staged: nothing was applied."""


class Command(ABC):
    """One undoable change. ``do`` may run again after ``undo`` (redo)."""

    text: str = ""

    @abstractmethod
    def do(self) -> None: ...

    @abstractmethod
    def undo(self) -> None: ...

    @property
    def nbytes(self) -> int:
        """Memory this command holds for undo/redo."""
        return 0

    @property
    def touched(self) -> tuple[str, ...]:
        """Canonical names of the tensors this command changes (for refreshing views)."""
        return ()

    def values(self, name: str, after: bool) -> torch.Tensor | None:
        """The values of ``name`` before (or after) this command, if the command keeps them."""
        return None


@dataclass
class _Snapshot:
    name: str
    tensor: torch.Tensor
    before: torch.Tensor
    swapped: bool  # before/after are whole data tensors swapped in, not copies to copy back
    after: torch.Tensor | None = None


class TensorEditCommand(Command):
    """Run ``mutate`` on some tensors in place; undo and redo restore the exact bytes.

    ``mutate`` runs once; redo restores the recorded result, so random initializers redo to the
    same bytes. Changing a tied Parameter changes every alias, since they are one object.

    A tensor that owns its storage is edited without copies: before ``mutate`` runs, its
    ``.data`` is replaced by a fresh tensor (a copy, or an empty one when ``overwrites`` says
    ``mutate`` writes every element without reading any), so the old data object is the undo
    state and the new one the redo state; undo and redo swap ``.data``. A tensor sharing storage
    with another (a view; named in ``shared``) must change in place: it is copied before and
    after. With ``shared=None`` (not known) every tensor is treated that way.

    Args:
        text: what the command does, for the undo menu.
        targets: ``(canonical name, tensor)`` pairs that ``mutate`` changes.
        mutate: the change, run under ``torch.no_grad()``.
        overwrites: ``mutate`` writes every element of every target without reading it.
        shared: names of targets whose storage other tensors of the model also use.
    """

    def __init__(
        self,
        text: str,
        targets: Sequence[tuple[str, torch.Tensor]],
        mutate: Callable[[], None],
        *,
        overwrites: bool = False,
        shared: Collection[str] | None = None,
        compute: Callable[[TensorOf], None] | None = None,
    ) -> None:
        self.text = text
        self._mutate: Callable[[], None] | None = mutate
        self._compute = compute
        self._staged: dict[str, torch.Tensor] | None = None
        self._overwrites = overwrites
        self._snapshots: list[_Snapshot] = []
        self._nbytes: int | None = None  # see nbytes
        for name, tensor in targets:
            swap = shared is not None and name not in shared and tensor.layout == torch.strided
            before = tensor.data if swap else tensor.detach().clone()
            self._snapshots.append(_Snapshot(name, tensor, before, swap))
        self._by_name: dict[str, _Snapshot] = {}  # values() is asked per target: no scan
        for snap in self._snapshots:
            self._by_name.setdefault(snap.name, snap)

    def _fresh(self, old: torch.Tensor) -> torch.Tensor:
        """New memory for a target's new values (filled by :meth:`_prime`)."""
        return torch.empty_like(old, memory_format=torch.preserve_format)

    def _prime(self, fresh: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``fresh`` ready for the edit: a copy of ``old`` unless the edit overwrites it all."""
        return fresh if self._overwrites else fresh.copy_(old)

    # --- staging ---------------------------------------------------------------------------
    @property
    def can_stage(self) -> bool:
        """:meth:`stage` can compute this edit off the model (not yet done, all targets swapped)."""
        return (
            self._compute is not None
            and self._mutate is not None
            and self._staged is None
            and all(s.swapped for s in self._snapshots)
        )

    @property
    def staged(self) -> bool:
        """New values are computed and wait for :meth:`do` to swap them in."""
        return self._staged is not None

    @property
    def numel(self) -> int:
        """Elements of all targets (how long the edit takes, roughly)."""
        return sum(s.before.numel() for s in self._snapshots)

    @property
    def work(self) -> float:
        """How long the edit takes, in elements of a ``normal_`` edit (``Initializer.work``)."""
        return self.numel

    def stage(self, state: TaskState | None = None) -> None:
        """Compute the new values into fresh tensors; the model is not touched.

        Safe in a worker thread as long as nothing writes the targets meanwhile; :meth:`do`
        refuses (:class:`StaleEditError`) if a target's data was replaced since. ``state``
        hears progress per tensor and may cancel (:class:`~paramscope.core.errors.Cancelled`).
        A failed or cancelled stage leaves the command unstaged, with whatever random numbers
        it drew consumed: build a new command rather than do this one.
        """
        if not self.can_stage:
            raise RuntimeError(f"{self.text}: cannot be staged")
        assert self._compute is not None
        snapshots = {s.name: s for s in self._snapshots}
        memory = {s.name: self._fresh(s.before) for s in self._snapshots}
        fresh: dict[str, torch.Tensor] = {}

        def tensor_of(name: str) -> torch.Tensor:
            if name not in fresh:
                if name not in snapshots:
                    raise RuntimeError(f"{self.text}: {name!r} is not one of the command's targets")
                if state is not None:
                    state.progress(len(fresh) / len(snapshots), name)
                fresh[name] = self._prime(memory[name], snapshots[name].before)
            return fresh[name]

        # thread-local grad mode: a worker thread starts with it on
        with torch.no_grad():
            self._compute(tensor_of)
            for name, snap in snapshots.items():  # a target compute left alone keeps its values
                if name not in fresh:
                    fresh[name] = memory[name].copy_(snap.before)
        self._staged = fresh

    def stale(self) -> list[str]:
        """Targets whose data was replaced since the command was built (a staged ``do`` refuses)."""
        return [s.name for s in self._snapshots if s.swapped and not _same_data(s.tensor, s.before)]

    def _swap_in_staged(self, staged: dict[str, torch.Tensor]) -> None:
        stale = self.stale()
        if stale:
            raise StaleEditError(
                f"{self.text}: {listed(stale)} changed while the new values were computed; "
                "nothing applied, apply again"
            )
        for snap in self._snapshots:
            snap.tensor.data = staged[snap.name]

    # --- undoable change --------------------------------------------------------------------
    def do(self) -> None:
        with torch.no_grad():
            if self._mutate is None:  # a redo: the sizes kept (0.1 s to sum again at 100,000)
                self._restore(before=False)
                return
            self._nbytes = None  # ``after`` is set below
            if self._staged is not None:
                self._swap_in_staged(self._staged)
                self._staged = None
                self._mutate = self._compute = None
                for snap in self._snapshots:
                    snap.after = snap.tensor.data
                return
            swapped = [snap for snap in self._snapshots if snap.swapped]
            memory = [self._fresh(snap.before) for snap in swapped]
            try:
                for snap, fresh in zip(swapped, memory, strict=True):
                    snap.tensor.data = self._prime(fresh, snap.before)
                self._mutate()
            except BaseException:
                self._restore(before=True)
                raise
            self._mutate = self._compute = None
            for snap in self._snapshots:
                snap.after = snap.tensor.data if snap.swapped else snap.tensor.detach().clone()

    def undo(self) -> None:
        with torch.no_grad():
            self._restore(before=True)

    def _restore(self, before: bool) -> None:
        for snap in self._snapshots:
            source = snap.before if before else snap.after
            assert source is not None
            if snap.swapped:
                snap.tensor.data = source
            else:
                snap.tensor.detach().copy_(source)

    @property
    def nbytes(self) -> int:
        # A swapped tensor holds one extra copy: whichever of before/after is not the live data
        # (after is the next command's before, or live). Copied ones hold both. Kept from the
        # first ``do`` (which sets ``after``) on: the undo label asks after every change.
        if self._nbytes is None:
            total = 0
            for snap in self._snapshots:
                size = snap.before.numel() * snap.before.element_size()
                total += size if snap.swapped or snap.after is None else 2 * size
            self._nbytes = total
        return self._nbytes

    @property
    def touched(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._snapshots)

    def values(self, name: str, after: bool) -> torch.Tensor | None:
        # Both are never written again: copies, or data objects swapped out of the model.
        # Staged values are known before ``do`` (a worker summarizes them for the views).
        snap = self._by_name.get(name)
        if snap is None:
            return None
        if after and snap.after is None and self._staged is not None:
            return self._staged[name]
        return snap.after if after else snap.before


def _same_data(tensor: torch.Tensor, data: torch.Tensor) -> bool:
    """``tensor``'s data is still ``data`` (the same memory seen the same way)."""
    live = tensor.data
    return (
        live.untyped_storage().data_ptr() == data.untyped_storage().data_ptr()
        and live.storage_offset() == data.storage_offset()
        and live.shape == data.shape
        and live.stride() == data.stride()
        and live.dtype == data.dtype
    )


Listener = Callable[[], None]


class CommandStack:
    """Undo/redo history with a memory limit and a clean (saved) mark."""

    def __init__(self, limit_bytes: int = DEFAULT_UNDO_LIMIT) -> None:
        self.limit_bytes = limit_bytes
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self._clean_index: int | None = 0
        self._dropped = 0
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def push(self, command: Command) -> None:
        """Do ``command`` and record it. If ``do`` raises, nothing is recorded."""
        command.do()
        self._done.append(command)
        self._undone.clear()
        if self._clean_index is not None and self._clean_index > len(self._done) - 1:
            self._clean_index = None  # the saved state was in the discarded redo branch
        self._enforce_limit()
        self._changed()

    def _enforce_limit(self) -> None:
        while len(self._done) > 1 and self.nbytes > self.limit_bytes:
            self._done.pop(0)
            self._dropped += 1
            if self._clean_index is not None:
                self._clean_index -= 1
                if self._clean_index < 0:
                    self._clean_index = None

    def undo(self) -> Command | None:
        if not self._done:
            return None
        command = self._done.pop()
        command.undo()
        self._undone.append(command)
        self._changed()
        return command

    def redo(self) -> Command | None:
        if not self._undone:
            return None
        command = self._undone.pop()
        command.do()
        self._done.append(command)
        self._changed()
        return command

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_text(self) -> str:
        return self._done[-1].text if self._done else ""

    @property
    def redo_text(self) -> str:
        return self._undone[-1].text if self._undone else ""

    @property
    def history(self) -> list[Command]:
        """Commands in effect, oldest first."""
        return list(self._done)

    @property
    def dropped(self) -> int:
        """How many old commands were dropped to keep within the memory limit."""
        return self._dropped

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._done) + sum(c.nbytes for c in self._undone)

    @property
    def is_clean(self) -> bool:
        return self._clean_index == len(self._done)

    def set_clean(self) -> None:
        self._clean_index = len(self._done)
        self._changed()

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self._clean_index = 0
        self._dropped = 0
        self._changed()
