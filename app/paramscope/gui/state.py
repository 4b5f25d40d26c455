"""The GUI's shared state: one Qt object that panels read and talk through.

Panels never hold model state: they take an :class:`AppState`, read ``state.session`` (the core
:class:`~paramscope.core.session.Session`) and listen to its signals. The main window creates one
AppState and hands it to every panel; each panel also runs on its own with a fresh AppState.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject, Signal

from paramscope.core.commands import Command
from paramscope.core.errors import ParamscopeError
from paramscope.core.model_statistics import TensorSummary
from paramscope.core.session import Session
from paramscope.core.sources import OpenedModel, open_source


class AppState(QObject):
    """The open session, the selection, and signals about both.

    Signals:
        sessionChanged(): a new model was opened (or the structure was rebuilt).
        tensorsChanged(tuple): tensors with these canonical names changed values (empty tuple: all).
        moduleSelected(str): the module (qualified name, "" for root) selected in the tree.
        tensorSelected(str): the tensor (canonical name) whose details are shown.
        tiedGroupSelected(int): index into ``session.report.tied_groups``, or -1 for none.
        gradientsChanged(): a backward pass or zero-grad changed ``.grad`` of parameters.
        errorOccurred(str): a one-line message for the user.
        noticeOccurred(str): something worth telling that is not an error (a torch warning).
        busyChanged(bool, str): long work started or finished (with what it is).
        summariesChanged(tuple): statistics of these canonical names arrived (from a worker).
    """

    sessionChanged = Signal()
    tensorsChanged = Signal(tuple)
    moduleSelected = Signal(str)
    tensorSelected = Signal(str)
    tiedGroupSelected = Signal(int)
    gradientsChanged = Signal()
    errorOccurred = Signal(str)
    noticeOccurred = Signal(str)
    busyChanged = Signal(bool, str)
    summariesChanged = Signal(tuple)

    def __init__(self, session: Session | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._session: Session | None = None
        self.selected_module = ""
        self.selected_tensor: str | None = None
        self.selected_group = -1
        self._busy: set[str] = set()  # long work using the model now ("backward", "files")
        self.busyChanged.connect(self.set_busy)
        if session is not None:
            self.set_session(session)

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("no model is open")
        return self._session

    @property
    def has_session(self) -> bool:
        return self._session is not None

    def set_session(self, session: Session) -> None:
        self._session = session
        session.add_listener(self._on_session_change)
        self.selected_module = ""
        self.selected_tensor = None
        self.selected_group = -1
        self.sessionChanged.emit()

    def open(self, spec: str, *, trust: bool = False, weights: str | None = None) -> bool:
        """Open ``spec``; on failure report the error and keep the current model."""
        try:
            opened = open_source(spec, trust=trust, weights=weights)
        except ParamscopeError as exc:
            self.errorOccurred.emit(str(exc))
            return False
        self.open_model(opened)
        return True

    def open_model(self, opened: OpenedModel) -> None:
        self.set_session(Session(opened))

    def _on_session_change(self, names: tuple[str, ...]) -> None:
        if names:
            self.tensorsChanged.emit(names)
        else:
            self.sessionChanged.emit()

    def store_summaries(self, summaries: dict[str, TensorSummary]) -> None:
        """Keep statistics computed by a worker and tell the views which tensors they cover."""
        self.session.store_summaries(summaries)
        self.summariesChanged.emit(tuple(summaries))

    def set_busy(self, busy: bool, what: str) -> None:
        """Record that long work using the model started or ended (``busyChanged`` calls it)."""
        if busy:
            self._busy.add(what)
        else:
            self._busy.discard(what)

    @property
    def model_busy(self) -> str | None:
        """What long work is using the model now (edits wait until it is done), if any."""
        return ", ".join(sorted(self._busy)) or None

    def refuse_if_busy(self, what: str) -> bool:
        """Report and return True when ``what`` must wait for long work using the model."""
        if self.model_busy is None:
            return False
        self.errorOccurred.emit(f"{what}: wait until the {self.model_busy} task finishes (it is using the model)")
        return True

    def execute(self, command: Command) -> bool:
        """Run ``command`` undoably; report a failure and leave the model as it was.

        Warnings torch gives while the command runs (e.g. ``trunc_normal_`` with a mean far
        outside ``[a, b]``) are passed on as notices instead of going to a console.
        """
        if self.refuse_if_busy(command.text):
            return False
        try:
            with self.warnings_as_notices(command.text):
                self.session.execute(command)
        except ParamscopeError as exc:
            self.errorOccurred.emit(str(exc))
            return False
        except (RuntimeError, ValueError, TypeError) as exc:
            self.errorOccurred.emit(f"{command.text}: {type(exc).__name__}: {exc}")
            return False
        return True

    @contextmanager
    def warnings_as_notices(self, what: str) -> Iterator[None]:
        """Pass warnings raised inside the block on as ``noticeOccurred`` lines about ``what``."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for text in dict.fromkeys(" ".join(str(w.message).split()) for w in caught):
                    self.noticeOccurred.emit(f"{what}: {text}")

    def select_module(self, name: str) -> None:
        if name != self.selected_module:
            self.selected_module = name
            self.moduleSelected.emit(name)

    def select_tensor(self, name: str) -> None:
        canonical = self.session.canonical(name)
        if canonical != self.selected_tensor:
            self.selected_tensor = canonical
            self.tensorSelected.emit(canonical)

    def select_tied_group(self, index: int) -> None:
        if index != self.selected_group:
            self.selected_group = index
            self.tiedGroupSelected.emit(index)
