"""Consent before opening a file that can run code: the question, and opening only on a yes."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.safety import UntrustedFileError
from paramscope.core.sources.sources import open_source
from paramscope.gui.state import AppState


def trust_question(error: UntrustedFileError) -> str:
    return (
        f"{error.path}\n\nRisk: {error.risk}.\n\nOpening it can run code from the file with your permissions. "
        "Open it only if you trust where it came from."
    )


def confirm_trust(parent: QWidget | None, error: UntrustedFileError) -> bool:
    """Ask whether to open a file that can run code; names the file and the risk. Default: no."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Open a file that can run code?", trust_question(error), parent=parent)
    open_button = box.addButton("Open anyway", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is open_button


def open_with_consent(
    state: AppState,
    spec: str,
    *,
    trust: bool = False,
    weights: str | None = None,
    ask: Callable[[UntrustedFileError], bool] | None = None,
    **options: str | None,
) -> bool:
    """Open ``spec``; a file that needs trust is opened only if ``ask`` says yes.

    ``options``: ``strip_prefix``, ``entry``, ``weights_entry`` for :func:`open_source`.
    """
    try:
        opened = open_source(spec, trust=trust, weights=weights, **options)
    except UntrustedFileError as exc:
        if ask is None or not ask(exc):
            state.errorOccurred.emit(str(exc))
            return False
        return open_with_consent(state, spec, trust=True, weights=weights, ask=None, **options)
    except ParamscopeError as exc:
        state.errorOccurred.emit(str(exc))
        return False
    state.open_model(opened)
    return True
