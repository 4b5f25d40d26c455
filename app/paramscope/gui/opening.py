"""Turning a path the user picked or dropped into a source spec, and the recent-files list."""

from __future__ import annotations

import ast
from pathlib import Path

from PySide6.QtCore import QSettings

RECENT_KEY = "recentFiles"
RECENT_MAX = 10
FILE_FILTER = (
    "Models and checkpoints (*.py *.pt *.pth *.bin *.ckpt *.safetensors *.pt2 *.onnx);;"
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


def add_recent_file(spec: str) -> None:
    files = [spec] + [f for f in recent_files() if f != spec]
    QSettings().setValue(RECENT_KEY, files[:RECENT_MAX])


def clear_recent_files() -> None:
    QSettings().setValue(RECENT_KEY, [])
