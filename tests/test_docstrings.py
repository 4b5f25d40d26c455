"""Every module under app/paramscope opens with a docstring that says what it is for."""

from __future__ import annotations

import ast
from pathlib import Path

import paramscope

PACKAGE = Path(paramscope.__file__).resolve().parent


def test_every_module_says_what_it_is_for() -> None:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        if not doc or len(doc.split()) < 4:
            missing.append(str(path.relative_to(PACKAGE)))
    assert missing == []
