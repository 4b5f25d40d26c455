"""Turning a path the user picked or dropped into a source spec, the recent-files list, and
opening data files off the GUI thread.

Parsing a checkpoint, building its module tree and the report take seconds for files of
100,000 tensors (and hostile files are bounded, not instant): :class:`SourceOpener` does all of
it in a :class:`~paramscope.gui.workers.TaskWorker` and swaps the session on the GUI thread, so the
window keeps painting and the old model stays until the new one is ready. Demos and the user's
Python code (``file.py:NAME``, ``module:NAME``) are still built on the GUI thread: user code may
create Qt objects, which must live in the GUI thread.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from paramscope.core.edit.session import Session
from paramscope.core.errors import shown
from paramscope.core.files.remote_io import is_remote, shown_url
from paramscope.core.files.safety import UntrustedFileError
from paramscope.core.sources.hub_ids import cached_model
from paramscope.core.sources.sources import open_source
from paramscope.core.tasks import SliceState, TaskState
from paramscope.gui.state import AppState
from paramscope.gui.workers import TaskWorker, long_lived_objects

RECENT_KEY = "recentFiles"
RECENT_MAX = 10
FILE_FILTER = (
    "Models and checkpoints (*.py *.pt *.pth *.bin *.ckpt *.tar *.safetensors *.json *.pt2 .metadata *.distcp *.npz *.npy);;"
    "Python files (*.py);;All files (*)"
)


def python_candidates(path: Path) -> list[str]:
    """Top-level names in a Python file that may build a model, likeliest first.

    Classes deriving from something called ``*Module`` come first, then functions whose name says
    they make a model; the file is parsed, not run.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return []
    modules: list[str] = []
    factories: list[str] = []
    instances: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b) for b in node.bases]
            if any(b.endswith("Module") or b.startswith(("nn.", "torch.nn.")) for b in bases):
                modules.append(node.name)
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            required = len(node.args.args) - len(node.args.defaults)
            if required == 0:
                factories.append(node.name)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            instances += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return modules + factories + instances


def spec_for_path(path: Path, name: str | None = None) -> str:
    """``file.py:NAME`` for Python files (NAME given or the first candidate), else the path."""
    if path.suffix == ".py":
        if name is None:
            candidates = python_candidates(path)
            name = candidates[0] if candidates else "model"
        return f"{path}:{name}"
    return str(path)


def recent_files() -> list[str]:
    value = QSettings().value(RECENT_KEY, [])
    if isinstance(value, str):  # QSettings returns a lone string for one-element lists
        value = [value]
    return [str(v) for v in (value or [])]


def displayed(spec: str) -> str:
    """``spec`` as shown and remembered: a URL without its credentials or signed query."""
    return shown_url(spec) if is_remote(spec) else shown(spec)


def add_recent_file(spec: str) -> None:
    spec = shown_url(spec) if is_remote(spec) else spec  # no password or signature in settings
    files = [spec] + [f for f in recent_files() if f != spec]
    QSettings().setValue(RECENT_KEY, files[:RECENT_MAX])


def gone(spec: str) -> bool:
    """Whether ``spec`` names a local file or folder (``file.py:NAME`` too) that no longer exists:
    a recent file deleted since, or a temporary one."""
    local = _local(spec)
    return local is not None and not _exists(local[0]) and cached_model(spec) is None  # (a model id: its cache)


def clear_recent_files() -> None:
    QSettings().setValue(RECENT_KEY, [])


def opens_in_background(spec: str) -> bool:
    """Whether ``spec`` names a data file or folder (parsed off the GUI thread).

    Demos and Python sources (``file.py:NAME``, ``package.module:NAME``) run code that may make Qt
    objects, and a missing path fails at once: those stay on the GUI thread.
    """
    if is_remote(spec.strip()):  # network reads must not freeze the window
        return True
    local = _local(spec)
    return local is not None and not local[1] and _exists(local[0])


def _local(spec: str) -> tuple[Path, bool] | None:
    """The local path ``spec`` names and whether it is Python source (``file.py:NAME``); None for
    demos, URLs and ``package.module:NAME``."""
    spec = spec.strip()
    if not spec or spec.startswith("demo:") or is_remote(spec):
        return None
    head, sep, name = spec.rpartition(":")
    if sep and head.endswith(".py") and name.isidentifier():
        return Path(head), True
    if sep and not spec.startswith(("/", "~", ".")):  # package.module:NAME
        return None
    return Path(spec), False


def _exists(path: Path) -> bool:
    try:
        return path.expanduser().exists()
    except (OSError, RuntimeError, ValueError):  # "~nosuchuser", NUL bytes: not a file
        return False


def open_session(
    spec: str, trust: bool, weights: str | None, state: TaskState, **options: str | None
) -> Session | UntrustedFileError:
    """Worker body: parse ``spec``, build its module tree and report (``Session``).

    A file that needs consent comes back as its error, to be asked about on the GUI thread.
    ``options``: ``strip_prefix``, ``entry``, ``weights_entry`` for :func:`open_source`.
    """
    state.progress(0.0, f"opening {displayed(spec)}")
    try:
        with long_lived_objects():  # ~10^6 objects for 100,000 tensors: out of the collector's walks
            opened = open_source(spec, trust=trust, weights=weights, state=SliceState(state, 0.0, 0.6), **options)
            # the report of every tensor: also off the GUI thread
            session = Session(opened, state=SliceState(state, 0.6, 0.97))
            state.progress(0.97, "diagnostics")
            session.diagnostics()  # kept by the session: the Diagnostics panel only shows them
    except UntrustedFileError as exc:
        return exc
    state.progress(1.0, "opened")
    return session


@dataclass(frozen=True)
class Ahead:
    """An open started before the window existed: its result to come, and its progress and cancel."""

    future: Future[Session | UntrustedFileError]
    state: TaskState


def open_ahead(spec: str, trust: bool = False, weights: str | None = None, **options: str | None) -> Ahead | None:
    """Start opening a data file in a thread before the window exists; None for a source the
    window opens on the GUI thread (demos, Python code).

    The command line's file is then read (~0.4 s for GPT-2, the GIL released) while the window's
    modules import and its widgets are built; :meth:`SourceOpener.open` takes the result.
    """
    if not opens_in_background(spec):
        return None
    state = TaskState()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paramscope-open")
    try:
        return Ahead(executor.submit(open_session, spec, trust, weights, state, **options), state)
    finally:
        executor.shutdown(wait=False)


# How often a worker waiting for an open started ahead passes its progress on and looks for a stop.
AHEAD_POLL_S = 0.1


def take_ahead(ahead: Ahead, state: TaskState) -> Session | UntrustedFileError:
    """Worker body: wait for ``ahead``'s result, passing its progress on to ``state``; a stop of
    ``state`` stops the open ahead too (else it would go on reading in the background)."""
    while True:
        try:
            return ahead.future.result(timeout=AHEAD_POLL_S)
        except TimeoutError:
            if state.cancelled:
                ahead.state.cancel()
            state.progress(ahead.state.fraction, ahead.state.message)  # (raises Cancelled on a stop)


class SourceOpener(QObject):
    """Opens data files in a worker; the session is swapped on the GUI thread when ready.

    Signals:
        started(str): opening ``spec`` began.
        progress(float, str): fraction done and the step (reading, the module tree, the report).
        aboutToSwap(): the new session is ready and replaces the current one now.
        opened(bool): opening ended: True, the new session is in place; False, it failed (the
            message went to ``state.errorOccurred``), was refused or stopped; the old model stays.
    """

    started = Signal(str)
    progress = Signal(float, str)
    aboutToSwap = Signal()
    opened = Signal(bool)

    def __init__(self, state: AppState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.worker = TaskWorker(self)
        self.worker.finished.connect(self._finished)
        self.worker.failed.connect(self._failed)
        self.worker.progress.connect(self.progress)
        self._pending: tuple[str, str | None, Callable[[UntrustedFileError], bool] | None, dict[str, str | None]] | None = None

    @property
    def is_running(self) -> bool:
        return self.worker.is_running

    def open(
        self,
        spec: str,
        *,
        trust: bool = False,
        weights: str | None = None,
        ask: Callable[[UntrustedFileError], bool] | None = None,
        ahead: Ahead | None = None,
        **options: str | None,
    ) -> None:
        """Start opening ``spec`` (an open still running is cancelled). ``ask``: consent for risky
        files; ``ahead``: the same open already under way (see :func:`open_ahead`), whose result
        is taken instead; ``options``: ``strip_prefix``, ``entry``, ``weights_entry`` for
        ``open_source``."""
        self._pending = (spec, weights, ask, options)
        if ahead is not None:
            self.worker.start(lambda st: take_ahead(ahead, st), f"Opening {shown(Path(spec).name)}")
        else:
            self.worker.start(lambda st: open_session(spec, trust, weights, st, **options), f"Opening {shown(Path(spec).name)}")
        self.started.emit(spec)

    def cancel_and_wait(self) -> bool:
        self._pending = None
        return self.worker.cancel_and_wait()

    def stop(self) -> str | None:
        """The user's Stop: the open under way is cancelled (its thread ends at its next check,
        within about a second even for a million tensors) and ``opened(False)`` says so; the model
        shown stays. Returns the source stopped, None if nothing was opening."""
        pending, self._pending = self._pending, None
        if pending is None or not self.worker.is_running:
            return None
        self.worker.cancel()
        self.opened.emit(False)
        return pending[0]

    def _finished(self, result: Session | UntrustedFileError) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        spec, weights, ask, options = pending
        if isinstance(result, UntrustedFileError):
            if ask is not None and ask(result):
                self.open(spec, trust=True, weights=weights, **options)
                return
            self.state.errorOccurred.emit(str(result))
            self.opened.emit(False)
            return
        self.aboutToSwap.emit()
        # the views' rows (a tuple per tensor) live as long as the model: made without the
        # collector's full passes over them (0.1 s each at 300,000 tensors), then frozen with it
        with long_lived_objects():
            self.state.set_session(result)
        add_recent_file(spec)
        self.opened.emit(True)

    def _failed(self, message: str) -> None:
        self._pending = None
        self.state.errorOccurred.emit(message)
        self.opened.emit(False)
