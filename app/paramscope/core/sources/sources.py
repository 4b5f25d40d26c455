"""One entry point that turns a source string into an open model.

Source kinds:
- ``demo:NAME``: a built-in model (:mod:`paramscope.core.sources.demos`).
- ``path/to/file.py:NAME``: a class, factory or module instance in the user's file.
- ``package.module:NAME``: the same from an importable module.
- a file or folder path: state_dict files, checkpoints, archives, distributed checkpoints
  (see :mod:`paramscope.core.files`, which decides the format from the content).
- a Hugging Face model id (``org/name``) already in this machine's hub cache
  (:mod:`paramscope.core.sources.hub_ids`); nothing is downloaded.

The first two run the user's own code, which is what they asked for. Data files never run code
without consent (``trust``).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from torch import nn

from paramscope.core.errors import SourceError, shown
from paramscope.core.files.opened import OpenedModel
from paramscope.core.sources.demos import DEMOS, build_demo
from paramscope.core.sources.hub_ids import cached_model, looks_like_model_id, not_cached_message
from paramscope.core.sources.user_code import UserCodeError, run_python_file
from paramscope.core.tasks import TaskState, part

_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _instantiate(obj: object, spec: str) -> nn.Module:
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise SourceError(f"{spec}: {type(obj).__name__} is neither an nn.Module nor callable")
    try:
        made = obj()
    except Exception as exc:
        raise SourceError(
            f"{spec}: calling it without arguments failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(made, nn.Module):
        raise SourceError(f"{spec}: returned {type(made).__name__}, not an nn.Module")
    return made


def _from_python_file(path: Path, name: str, spec: str) -> nn.Module:
    try:
        module = run_python_file(path)
    except UserCodeError as exc:
        raise SourceError(str(exc)) from exc.__cause__
    if not hasattr(module, name):
        raise SourceError(f"{path}: defines no {name!r}")
    return _instantiate(getattr(module, name), spec)


def _from_import(module_name: str, name: str, spec: str) -> nn.Module:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SourceError(f"{spec}: cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise SourceError(f"{spec}: importing failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        raise SourceError(f"{spec}: module {module_name!r} defines no {name!r}")
    return _instantiate(getattr(module, name), spec)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _is_url(spec: str) -> bool:
    """A URL: http(s) and s3 are read by ranges; any other scheme is named as unsupported."""
    if _URL.match(spec) is None:
        return False
    from paramscope.core.files.remote_io import is_remote, shown_url

    if not is_remote(spec):
        scheme = spec.partition(":")[0]
        raise SourceError(f"{shown_url(spec)}: {scheme}:// sources are not supported (http, https and s3 are)")
    return True


def _expand(path: Path) -> Path:
    """``~`` and ``~user`` expanded where they name a home folder; otherwise left as typed."""
    try:
        return path.expanduser()
    except RuntimeError:  # "~nosuchuser": not a home folder, so a literal name
        return path


def _open_file(path: Path, trust: bool, entry: str | None, state: TaskState | None) -> OpenedModel:
    from paramscope.core.files.readers import open_file  # imported late: it imports this module

    opened = open_file(path, trust, entry, state)
    if opened is None:
        raise SourceError(f"{path}: not a format paramscope can open")
    return opened


def _cached_model(spec: str, label: str) -> Path:
    """A Hugging Face model id's folder in the local cache (``gpt2``, ``org/name``), or why not."""
    folder = cached_model(spec)
    if folder is not None:
        return folder
    if looks_like_model_id(spec):
        if "/" in spec:
            raise SourceError(not_cached_message(label))
        raise SourceError(f"{label}: no such file, and not demo:NAME, FILE.py:NAME, module:NAME or a cached Hugging Face model id")
    raise SourceError(f"{label}: no such file")  # a path: /data/run/last.ckpt, ./model.pt


def open_source(
    spec: str,
    *,
    trust: bool = False,
    weights: str | None = None,
    strip_prefix: str | None = None,
    entry: str | None = None,
    weights_entry: str | None = None,
    state: TaskState | None = None,
) -> OpenedModel:
    """Open ``spec`` (see the module docstring) as a model.

    Args:
        spec: the source string.
        trust: allow formats that can run code from the file (pickled modules, ``.pt2``).
        weights: a state_dict file to load into the model after building it.
        strip_prefix: a prefix to strip from the weights' keys first, or ``"auto"``.
        entry: the weight set to open when ``spec`` is a checkpoint holding several (``"ema"``).
        weights_entry: the same for the ``weights`` file.
        state: progress and cancel of a data file's open (a million tensors take half a minute).

    Raises:
        SourceError: with a one-line message naming the spec or file and the problem.
    """
    spec, opening = spec.strip(), part(state, 0.0, 0.5) if weights is not None else state  # (then the weights)
    label = shown(spec)
    if not spec:
        raise SourceError("empty source: give demo:NAME, FILE.py:NAME, package.module:NAME or a file")
    opened: OpenedModel
    if entry is not None and not _expand(Path(spec)).exists():
        raise SourceError(f"{label}: --entry {shown(entry)} picks a weight set in a checkpoint file; this is not a file")
    if spec.startswith("demo:"):
        name = spec[len("demo:") :]
        if name not in DEMOS:
            raise SourceError(f"{label}: unknown demo; known demos: {', '.join(DEMOS)}")
        opened = OpenedModel(build_demo(name), spec, "demo")
    elif _is_url(spec):  # before paths: "https://host/x" is no file name
        from paramscope.core.files.remote import open_remote

        opened = open_remote(spec, state=opening)
    else:
        head, sep, name = spec.rpartition(":")
        if sep and head.endswith(".py") and name.isidentifier():
            opened = OpenedModel(_from_python_file(Path(head), name, label), spec, "python", path=Path(head))
        elif sep and _DOTTED.match(head) and name.isidentifier() and not Path(spec).exists():
            opened = OpenedModel(_from_import(head, name, label), spec, "python")
        else:
            path = _expand(Path(spec))
            cached = not path.exists()
            if cached:
                path = _cached_model(spec, label)
            opened = _open_file(path, trust, entry, opening)
            if cached:  # named by its id (the title, reopening), the folder said in a note
                opened.notes.insert(0, f"{spec} from the Hugging Face cache: {opened.path.parent if opened.path else path}")
                opened.source = spec
    if weights is not None:
        from paramscope.core.sources.weights import load_weights_into

        load_weights_into(opened, Path(weights), strip_prefix=strip_prefix, entry=weights_entry, state=part(state, 0.5, 1.0))
    return opened
