"""Opening sources: demos, a user's file, an importable module, and bad specs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

from paramscope.core.errors import SourceError
from paramscope.core.sources.sources import open_source


def test_demo_source() -> None:
    opened = open_source("demo:mlp")
    assert isinstance(opened.model, nn.Sequential)
    assert opened.can_forward


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("demo:nope", "unknown demo"),
        ("", "empty source"),
        ("no/such/file.pt", "no such file"),
    ],
)
def test_bad_specs_give_one_line_errors(spec: str, fragment: str) -> None:
    with pytest.raises(SourceError) as info:
        open_source(spec)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_python_file_class_factory_and_instance(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "models.py",
        """
        from torch import nn
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(2, 2)
        def make():
            return nn.Linear(5, 1)
        instance = nn.Linear(7, 1)
        not_a_model = 3
        def broken():
            raise RuntimeError("boom")
        """,
    )
    assert isinstance(open_source(f"{f}:Net").model.fc, nn.Linear)
    assert open_source(f"{f}:make").model.in_features == 5
    assert open_source(f"{f}:instance").model.in_features == 7
    with pytest.raises(SourceError, match="neither an nn.Module nor callable"):
        open_source(f"{f}:not_a_model")
    with pytest.raises(SourceError, match="RuntimeError: boom"):
        open_source(f"{f}:broken")
    with pytest.raises(SourceError, match="defines no 'Missing'"):
        open_source(f"{f}:Missing")


def test_python_file_that_fails_to_run(tmp_path: Path) -> None:
    f = _write(tmp_path / "bad.py", "raise ImportError('no such thing')\n")
    with pytest.raises(SourceError, match=r"bad\.py: running it failed"):
        open_source(f"{f}:Net")


def test_package_module_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _write(pkg / "nets.py", "from torch import nn\ndef tiny():\n    return nn.Linear(3, 3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert open_source("mypkg.nets:tiny").model.out_features == 3
    with pytest.raises(SourceError, match="cannot import"):
        open_source("mypkg.nothere:tiny")
    sys.modules.pop("mypkg.nets", None)
    sys.modules.pop("mypkg", None)
