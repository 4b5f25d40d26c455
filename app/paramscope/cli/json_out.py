"""The ``--json`` output of every command: valid JSON, written in chunks, one line per item of a
top-level list (a tensor, a module), so the text of a million tensors is never held whole."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from paramscope.core.model.json_ready import json_ready

_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))  # orjson's separators


def _encode(value: Any) -> str:
    """One value as compact JSON by the standard library's C encoder; NaN/Inf, rare, become
    strings (``json_ready``)."""
    try:
        return _ENCODER.encode(value)
    except ValueError:
        return _ENCODER.encode(json_ready(value))


_NO_FLOAT = frozenset({str, int, bool, type(None)})


def _finite(value: Any) -> bool:
    """Whether ``value`` holds no NaN or Inf float (orjson would write them as ``null``)."""
    if isinstance(value, dict):  # (subclasses too: orjson writes an OrderedDict as a dict)
        value = value.values()
    elif not isinstance(value, list | tuple):
        return not isinstance(value, float) or math.isfinite(value)
    for item in value:
        kind = type(item)
        if kind is float:
            if item - item != 0.0:  # NaN and Inf give NaN
                return False
        elif kind not in _NO_FLOAT and not _finite(item):
            return False
    return True


def _encode_item(value: Any, ready: bool = False) -> str:
    """One item of a long list (a tensor's entry) by orjson: the standard library formats floats
    about ten times slower, which was most of a 100,000-tensor ``inspect --json`` (40 floats
    each). The same numbers either way. orjson writes NaN and Inf as ``null``, so an item is
    looked into first unless it is ``ready`` (an ``inspection.Entries``); what orjson cannot write
    (integers past 64 bits, other types) goes the standard library's way."""
    if ready or _finite(value):
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            pass
    return _encode(value)


def _json_chunks(data: Any) -> Iterator[str]:
    """Top-level keys indented, one line per item of a top-level list (a tensor, a module).

    A C encoder writes each line: ``json.dump(indent=2)`` is pure Python, ~60 s for the
    7 million values of a 100,000-tensor inspect. Chunks, so the text is never held whole.
    """
    if not isinstance(data, dict) or not data:
        yield _encode(data)
        return
    yield "{"
    for number, (key, value) in enumerate(data.items()):
        yield f"{',' if number else ''}\n  {_encode(str(key))}: "
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):  # (Entries: made one by one)
            if not len(value):
                yield "[]"
                continue
            yield "["
            ready = getattr(value, "ready_for_json", False)  # (inspection.Entries)
            for i, item in enumerate(value):
                yield f"{',' if i else ''}\n    {_encode_item(item, ready)}"
            yield "\n  ]"
        else:
            yield _encode(value)
    yield "\n}"


def _json_text(data: Any) -> str:
    return "".join(_json_chunks(data))


def print_json(data: Any) -> None:
    for chunk in _json_chunks(data):
        sys.stdout.write(chunk)
    sys.stdout.write("\n")
