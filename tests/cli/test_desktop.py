"""``paramscope desktop``: a menu entry that opens the real window on the files it is given, the
file types a file manager then gives to paramscope, and a clean removal."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from paramscope.cli import desktop_cmd, main
from paramscope.resources import resource_path


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "share"
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home


def _entry(home: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(home / desktop_cmd.ENTRY, encoding="utf-8")
    return parser["Desktop Entry"]


def _exec_command(value: str, files: list[str]) -> list[str]:
    """An Exec value as the Desktop Entry spec has a launcher read it: the string's escapes undone,
    then words split at spaces outside double quotes, where a backslash escapes the next character;
    ``%F`` the files, ``%%`` a percent sign."""
    escapes = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    text, chars = "", iter(value)
    for char in chars:
        text += escapes.get(next(chars), "?") if char == "\\" else char
    words: list[str] = []
    word, quoted, escaped, started = "", False, False, False
    for char in text:
        if escaped:
            word, escaped = word + char, False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted, started = not quoted, True
        elif char == " " and not quoted:
            if word or started:
                words.append(word)
            word, started = "", False
        else:
            word += char
    if word or started:
        words.append(word)
    out: list[str] = []
    for word in words:
        out += files if word == "%F" else [word.replace("%%", "%")]
    return out


def test_install_writes_the_entry_icon_and_types(data_home: Path, capsys) -> None:
    assert main(["desktop"]) == 0
    entry = _entry(data_home)
    assert entry["Type"] == "Application" and entry["Icon"] == "paramscope"
    assert _exec_command(entry["Exec"], ["A"]) == [sys.executable, "-m", "paramscope", "A"]
    assert set(entry["MimeType"].strip(";").split(";")) == set(desktop_cmd.MIME_TYPES)
    assert entry["StartupWMClass"] == "paramscope"
    assert (data_home / desktop_cmd.ICON).read_bytes() == resource_path("icons/paramscope.svg").read_bytes()
    package = (data_home / desktop_cmd.MIME).read_text(encoding="utf-8")
    for pattern in ("*.safetensors", "*.pt", "*.pth", "*.ckpt"):
        assert f'<glob pattern="{pattern}"/>' in package
    assert "*.bin" not in package  # any program's data: not claimed
    out = capsys.readouterr().out
    assert str(data_home / desktop_cmd.ENTRY) in out
    assert main(["desktop"]) == 0  # again: the same files, nothing else
    written = [p.name for p in (data_home / "applications").iterdir() if p.name != "mimeinfo.cache"]  # (a cache)
    assert written == ["paramscope.desktop"]


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_the_entry_is_valid(data_home: Path) -> None:
    desktop_cmd.install(data_home, sys.executable)
    done = subprocess.run(["desktop-file-validate", str(data_home / desktop_cmd.ENTRY)], capture_output=True, text=True)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout


@pytest.mark.skipif(
    shutil.which("update-mime-database") is None or shutil.which("gio") is None,
    reason="shared-mime-info or gio not installed",
)
def test_checkpoints_get_the_types_the_entry_opens(data_home: Path, tmp_path: Path) -> None:
    desktop_cmd.install(data_home, sys.executable)
    safetensors, checkpoint = tmp_path / "w.safetensors", tmp_path / "w.pt"
    save_file({"w": torch.ones(3)}, str(safetensors))
    torch.save({"w": torch.ones(3)}, checkpoint)  # a zip: application/zip without the package
    environment = {**os.environ, "XDG_DATA_HOME": str(data_home)}
    for path, wanted in ((safetensors, "application/x-safetensors"), (checkpoint, "application/x-pytorch-checkpoint")):
        done = subprocess.run(
            ["gio", "info", "-a", "standard::content-type", str(path)], capture_output=True, text=True, env=environment
        )
        assert f"standard::content-type: {wanted}" in done.stdout, done.stdout


def test_the_entry_opens_the_window_on_a_file_with_a_space(data_home: Path, tmp_path: Path) -> None:
    desktop_cmd.install(data_home, sys.executable)
    folder = tmp_path / "my run $1"
    folder.mkdir()
    weights = folder / "model weights.safetensors"
    save_file({"layer.weight": torch.ones(3, 2)}, str(weights))
    shot = tmp_path / "shot.png"
    command = _exec_command(_entry(data_home)["Exec"], [str(weights)]) + ["--screenshot", str(shot)]
    environment = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert shot.stat().st_size > 1000


def test_exec_quotes_an_interpreter_in_a_folder_with_spaces_and_quotes() -> None:
    python = '/home/me/my "env" $HOME/bin/python%1'
    entry = desktop_cmd.desktop_entry(python)
    value = next(line for line in entry.splitlines() if line.startswith("Exec="))[len("Exec=") :]
    assert _exec_command(value, ["f"]) == [python, "-m", "paramscope", "f"]


def test_remove_takes_away_only_what_install_wrote(data_home: Path, capsys) -> None:
    desktop_cmd.install(data_home, sys.executable)
    other = data_home / "applications" / "other.desktop"
    other.write_text("[Desktop Entry]\nType=Application\nName=other\nExec=other\n", encoding="utf-8")
    assert main(["desktop", "remove"]) == 0
    for relative in (desktop_cmd.ENTRY, desktop_cmd.ICON, desktop_cmd.MIME):
        assert not (data_home / relative).exists()
    assert other.exists()
    capsys.readouterr()
    assert main(["desktop", "remove"]) == 0
    assert "nothing to remove" in capsys.readouterr().out


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_DATA_HOME", str(blocked))
    assert main(["desktop"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"paramscope: {blocked}") and "cannot install the desktop entry there" in err and "\n" not in err


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_other_desktops_are_told_it_is_for_freedesktop_ones(data_home: Path, monkeypatch: pytest.MonkeyPatch, capsys, platform: str) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert main(["desktop"]) != 0
    assert "freedesktop.org menu entry (Linux and BSD desktops)" in capsys.readouterr().err
    assert not data_home.exists()  # nothing written
