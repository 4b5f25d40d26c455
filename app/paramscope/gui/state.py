"""The GUI's shared state: one Qt object that panels read and talk through.

Panels never hold model state: they take an :class:`AppState`, read ``state.session`` (the core
:class:`~paramscope.core.edit.session.Session`) and listen to its signals. The selection and whether
long work is using the model are the Session's (the Python API reads them there); AppState only
mirrors the Session's callbacks as Qt signals. The main window creates one AppState and hands it
to every panel; each panel also runs on its own with a fresh AppState.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject, Signal

from paramscope.core.edit.commands import Command
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.model.model_statistics import StatColumns, TensorSummary
from paramscope.core.sources.sources import OpenedModel, open_source
from paramscope.gui.workers import expect_freed


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
        gradNormsChanged(tuple): gradient norms of these canonical names are known (empty: all).
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
    gradNormsChanged = Signal(tuple)

    def __init__(self, session: Session | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._session: Session | None = None
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
        old = self._session
        if old is not None:  # it is dropped: nothing it does is news any more
            old.remove_listener(self._on_session_change)
            old.remove_selection_listener(self._on_selection)
            old.remove_busy_listener(self._on_busy)
        self._session = session
        session.add_listener(self._on_session_change)
        session.add_selection_listener(self._on_selection)
        session.add_busy_listener(self._on_busy)
        for what in sorted(old.busy_tasks if old is not None else ()):
            if what not in session.busy_tasks:  # work on the old model no longer uses the model
                self.busyChanged.emit(False, what)
        self.sessionChanged.emit()
        if old is not None and old.model is not session.model:
            expect_freed(old.model, self)

    # --- the session's selection, mirrored -----------------------------------------------------
    @property
    def selected_module(self) -> str:
        return self._session.selected_module if self._session is not None else ""

    @property
    def selected_tensor(self) -> str | None:
        return self._session.selected_tensor if self._session is not None else None

    @property
    def selected_group(self) -> int:
        return self._session.selected_group if self._session is not None else -1

    def _on_busy(self, busy: bool, what: str) -> None:
        self.busyChanged.emit(busy, what)

    def _on_selection(self, what: str, value: object) -> None:
        if what == "module":
            self.moduleSelected.emit(value)
        elif what == "tensor":
            self.tensorSelected.emit(value)
        else:
            self.tiedGroupSelected.emit(value)

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

    def store_summaries(self, summaries: dict[str, TensorSummary], columns: StatColumns | None = None) -> None:
        """Keep statistics computed by a worker (``columns``: their numbers as arrays, if it made
        them) and tell the views which tensors they cover."""
        self.session.store_summaries(summaries, columns)
        self.summariesChanged.emit(tuple(summaries))

    def store_grad_norms(self, norms: dict[str, float | None], version: int) -> None:
        """Keep gradient norms a worker measured (unless the gradients changed since)."""
        if self.session.store_grad_norms(norms, version):
            self.gradNormsChanged.emit(tuple(norms))

    def forget_grad_norms(self) -> None:
        """``.grad`` changed in a way nobody measured: every norm is measured again."""
        self.session.forget_grad_norms()
        self.gradNormsChanged.emit(())

    def replace_grad_norms(self, norms: dict[str, float | None]) -> None:
        """Every gradient's norm after a backward or zero grad (what is left out gets measured)."""
        self.session.replace_grad_norms(norms)
        self.gradNormsChanged.emit(())

    def set_busy(self, busy: bool, what: str) -> None:
        """Record in the session that long work using the model started or ended
        (``busyChanged`` follows when that is news)."""
        if self._session is not None:
            self._session.set_busy(busy, what)

    @property
    def model_busy(self) -> str | None:
        """What long work is using the model now (edits wait until it is done), if any."""
        return self._session.model_busy if self._session is not None else None

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
        except (RuntimeError, ValueError, TypeError, ArithmeticError) as exc:  # (the model is as it was)
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
        if self._session is not None:  # moduleSelected follows from the session
            self._session.select_module(name)

    def select_tensor(self, name: str) -> None:
        self.session.select_tensor(name)

    def select_tied_group(self, index: int) -> None:
        if self._session is not None:
            self._session.select_tied_group(index)
