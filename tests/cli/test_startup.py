"""`paramscope --help`, `--version` and every subcommand's --help answer without torch or Qt."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paramscope.cli import SUBCOMMANDS

HEAVY = ("torch", "PySide6", "pyqtgraph", "numpy")

PROBE = """
import sys
from paramscope.cli import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
print("CODE:" + str(code))
"""


def _probe(argv: list[str]) -> tuple[list[str], str, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    heavy = next(line for line in lines if line.startswith("HEAVY:"))[len("HEAVY:") :]
    code = next(line for line in lines if line.startswith("CODE:"))[len("CODE:") :]
    return [m for m in heavy.split(",") if m], code, done.stdout


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"]] + [[name, "--help"] for name in SUBCOMMANDS],
    ids=lambda argv: " ".join(argv),
)
def test_help_and_version_import_neither_torch_nor_qt(argv: list[str]) -> None:
    heavy, code, output = _probe(argv)
    assert heavy == [], f"paramscope {' '.join(argv)} imported {heavy}"
    assert code in ("0", "None")
    if argv == ["--version"]:
        from paramscope import __version__

        assert output.startswith(f"paramscope {__version__}\n")
    else:  # the usage line of the command that was asked
        assert output.startswith(f"usage: {' '.join(['paramscope', *argv[:-1]])} ")


def test_version_prints_the_package_version() -> None:
    from paramscope import __version__

    _, _, output = _probe(["--version"])
    assert f"paramscope {__version__}" in output
