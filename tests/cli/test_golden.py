"""The public JSON of ``inspect`` and ``grad`` against golden files in ``tests/golden/``.

Keys, nesting, list lengths, strings, booleans and nulls must match exactly (a renamed or dropped
key fails); numbers match within a tolerance, since the last bits of a sum may differ between
machines. The demos are built from fixed seeds, so the output is deterministic.

After an intended change to the JSON, regenerate the files and review the diff:

    PARAMSCOPE_UPDATE_GOLDEN=1 PYTHONPATH=$PWD/app python -m pytest tests/cli/test_golden.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
UPDATE = os.environ.get("PARAMSCOPE_UPDATE_GOLDEN") == "1"
REL, ABS = 1e-5, 1e-7

CASES = {
    "inspect_demo_mlp": ["inspect", "demo:mlp", "--json"],
    "inspect_demo_shared": ["inspect", "demo:shared", "--json"],
    "grad_demo_mlp": ["grad", "demo:mlp", "--json"],
    "grad_demo_shared_ones": ["grad", "demo:shared", "--input", "ones(1,1)", "--json"],
}


def _run(argv: list[str]) -> object:
    """The command's JSON, from a fresh process as a user runs it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def differences(got: object, want: object, at: str = "$") -> list[str]:
    """Where ``got`` departs from ``want``: one line per difference (empty: they match)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{at}: {type(got).__name__} instead of an object"]
        if list(got) != list(want):
            return [f"{at}: keys {list(got)} instead of {list(want)}"]
        return [line for key in want for line in differences(got[key], want[key], f"{at}.{key}")]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{at}: {got!r:.80} instead of a list of {len(want)}"]
        return [
            line
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for line in differences(g, w, f"{at}[{i}]")
        ]
    if isinstance(want, bool) or want is None or isinstance(want, str):
        return (
            []
            if got is want or (type(got) is type(want) and got == want)
            else [f"{at}: {got!r} instead of {want!r}"]
        )
    if isinstance(want, (int, float)):
        if (
            isinstance(got, bool)
            or not isinstance(got, (int, float))
            or type(got) is not type(want)
        ):
            return [f"{at}: {got!r} instead of the number {want!r}"]
        close = math.isclose(got, want, rel_tol=REL, abs_tol=ABS) or (
            math.isnan(got) and math.isnan(want)
        )
        return [] if close else [f"{at}: {got!r} instead of {want!r}"]
    return [f"{at}: unexpected golden value {want!r}"]


@pytest.mark.parametrize("name", list(CASES))
def test_json_matches_its_golden_file(name: str) -> None:
    path = GOLDEN / f"{name}.json"
    got = _run(CASES[name])
    if UPDATE:
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    assert differences(got, want) == []


def test_a_renamed_key_a_changed_string_or_a_moved_number_is_caught() -> None:
    want = json.loads((GOLDEN / "grad_demo_mlp.json").read_text(encoding="utf-8"))
    same = json.loads(json.dumps(want))
    assert differences(same, want) == []
    renamed = json.loads(json.dumps(want).replace('"weight_norm"', '"weightnorm"'))
    assert differences(renamed, want)
    assert differences({**want, "extra": 1}, want)
    assert differences({**want, "loss": want["loss"] * (1 + 1e-3)}, want)
    assert differences({**want, "loss_name": "mean"}, want)
    assert differences({**want, "accumulate": None}, want)
    assert differences({**want, "loss": str(want["loss"])}, want)
    assert not differences({**want, "loss": want["loss"] * (1 + 1e-9)}, want)
