"""Saving an open session: export its model, then mark the session saved (nothing unsaved)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from paramscope.core.files.export import ExportResult, export_model
from paramscope.core.tasks import TaskState

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session


def save_session(
    session: Session,
    path: Path | str,
    module: str = "",
    state: TaskState | None = None,
    sync: bool = False,
) -> ExportResult:
    """Export the session's model and, for a whole-model export, mark the session saved (clean)."""
    result = export_model(session.model, path, module, state, session.opened.loader, sync)
    if not module:
        session.stack.set_clean()
    return result
