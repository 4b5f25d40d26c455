"""Fuzzing source strings: a model or a clear one-line error, never another exception."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from paramscope.core.errors import ParamscopeError
from paramscope.core.sources.sources import open_source

spec_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda s: "demo:" + s, st.text(max_size=12)),
    st.builds(lambda a, b: f"{a}.py:{b}", st.text(max_size=10), st.text(max_size=10)),
    st.from_regex(r"[a-z_]{1,8}(\.[a-z_]{1,6}){0,2}:[A-Za-z_]{1,8}", fullmatch=True),
)


def _imports_real_module(spec: str) -> bool:
    """package.module:NAME runs the user's code on purpose: never call real modules' functions."""
    head, sep, _ = spec.rpartition(":")
    if not sep or not head:
        return False
    try:
        return importlib.util.find_spec(head.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=spec_text)
def test_any_source_string_opens_or_fails_cleanly(spec: str, tmp_path: Path) -> None:
    assume(not _imports_real_module(spec))
    assume("\x00" not in spec)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # relative paths land in an empty folder
    try:
        opened = open_source(spec)
    except ParamscopeError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip()
    else:
        assert opened.model is not None
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize(
    "spec", ["demo:", ":", "demo:mlp:", "x.py:", ".py:Net", "a..b:c", "  ", "demo:MLP", "~0", "~nosuchuser/x.pt"]
)
def test_regressions(spec: str) -> None:
    with pytest.raises(ParamscopeError):
        open_source(spec)
