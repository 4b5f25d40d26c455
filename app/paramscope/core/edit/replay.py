"""Export a session's changes as a Python script that replays them on a fresh model.

Every init and value edit command carries ``replay_code``: Python lines using ``T(name)`` (a
tensor of ``model``), ``model`` and, for inits, the request's generator ``g``. The script opens
a fresh instance of the same source (``open_source(SOURCE).model``), runs those lines in order
under ``torch.no_grad()``, and optionally saves the state_dict. Run against the same source, it
gives bit-identical tensors (tested by running it).

Example:
    >>> text = replay_script(session)
    >>> Path("replay.py").write_text(text)   # then: python replay.py out.pt
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any

from paramscope.core.edit.commands import Command

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session


def format_value(value: Any) -> str:
    """A value as Python source (the replay script and rule texts use it)."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"float({str(value)!r})"
        return repr(value)
    return repr(value)


_HEADER = '''\
"""Replay of the changes made in paramscope to {source}.

Run:  python {{this file}} [OUT.pt]   (saves the resulting state_dict when OUT.pt is given)
Or import it and call replay(model) on a model of your own built like {source}.
"""

import sys

import torch
from torch.nn import init

SOURCE = {source!r}


def load_model():
    from paramscope.core.sources.sources import open_source

    return open_source(SOURCE).model


def custom_from_file(path, function):
    # Runs the initializer's file, as paramscope did.
    import importlib.util

    spec = importlib.util.spec_from_file_location("_replay_custom_init", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)


def custom_from_module(module_name, function):
    import importlib

    return getattr(importlib.import_module(module_name), function)


def custom_from_text(text, function):
    # The initializer typed in paramscope's editor, run as Python.
    namespace = {{"__name__": "__paramscope_custom__", "torch": torch, "nn": torch.nn, "init": init}}
    exec(compile(text, "<custom initializer>", "exec"), namespace)
    return namespace[function]


def in_float32(initialize, tensor, **kwargs):
    # torch has no kernel for this initializer on the tensor's dtype (float8; orthogonal_ in
    # bfloat16 or float16): drawn in float32 and rounded in, as paramscope did.
    drawn = torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device)
    initialize(drawn, **kwargs)
    tensor.copy_(drawn)


def expression(text, x):
    from paramscope.core.edit.expressions import compile_expression

    return compile_expression(text).evaluate(x.clone())


def replay(model):
    def T(name):
        try:
            return model.get_parameter(name)
        except AttributeError:
            return model.get_buffer(name)

    with torch.no_grad():
'''

_FOOTER = """
    return model


if __name__ == "__main__":
    model = replay(load_model())
    if len(sys.argv) > 1:
        torch.save(model.state_dict(), sys.argv[1])
        print(f"wrote {sys.argv[1]}")
"""


def replayable(command: Command) -> bool:
    return isinstance(getattr(command, "replay_code", None), str)


def replay_script(session: Session, source: str | None = None) -> str:
    """The session's changes in effect (undone ones excluded) as a runnable Python script.

    Args:
        session: whose ``stack.history`` to export.
        source: the model source the script opens (default: the session's own).

    Changes that cannot be replayed (made by commands without ``replay_code``) and changes dropped
    from the undo history by its memory limit are listed as comments at the top.
    """
    source = source or session.opened.source
    body: list[str] = []
    warnings: list[str] = []
    if session.stack.dropped:
        warnings.append(
            f"# WARNING: {session.stack.dropped} earliest change(s) were dropped from the undo history "
            "(memory limit) and are not in this script."
        )
    for number, command in enumerate(session.stack.history, start=1):
        if replayable(command):
            body.append(f"# --- change {number}")
            body.append(command.replay_code)  # type: ignore[attr-defined]
        else:
            warnings.append(f"# WARNING: change {number} ({command.text}) cannot be replayed by this script.")
            body.append(f"# --- change {number}: {command.text} (not replayable)")
    if not any(replayable(c) for c in session.stack.history):
        body.append("pass  # no changes")
    text = _HEADER.format(source=source)
    if warnings:
        text = text.replace("import sys\n", "\n".join(warnings) + "\n\nimport sys\n", 1)
    return text + textwrap.indent("\n".join(body), " " * 8) + "\n" + _FOOTER
