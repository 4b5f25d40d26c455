"""The project's shape: core free of Qt, resources inside the wheel, entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_no_qt() -> None:
    code = (
        "import sys, pkgutil, importlib, paramscope.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'paramscope.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'PyQt5', 'PyQt6')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_import_linter_contracts_hold() -> None:
    result = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_wheel_ships_resources(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("paramscope-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "paramscope/resources/style.qss" in names
    assert "paramscope/resources/icons/paramscope.svg" in names
    assert "paramscope/core/model/report.py" in names
    assert "paramscope/gui/state.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_python_dash_m_version() -> None:
    out = subprocess.run([sys.executable, "-m", "paramscope", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("paramscope ")


def test_top_level_is_exactly_what_the_design_asks() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    if not tracked:  # not a git checkout (an unpacked sdist): nothing to compare
        pytest.skip("not a git checkout")
    top = {line.split("/")[0] for line in tracked.splitlines()}
    assert top == {"app", "resources", "tests", "pyproject.toml", "README.md", ".ci", ".gitignore"}


def test_units_stay_small() -> None:
    """No module over 500 lines and no function over 60 (issue 17): small units a newcomer can read."""
    import ast

    too_big = []
    for path in sorted((ROOT / "app" / "paramscope").rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 500:
            too_big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_big, too_big
