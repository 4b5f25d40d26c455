"""Custom initializers: a user's ``f(tensor, generator)`` or ``f(tensor)``, run as it is.

Loaded from ``file.py:function``, ``package.module:function`` or source text typed in the
editor. This runs the user's Python code on purpose; that is what the user asked for. A function
without ``generator`` runs inside ``torch.random.fork_rng`` seeded from the request's generator,
so it repeats too and the user's global random stream is left as it was.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import init as torch_init

from paramscope.core.edit.replay import format_value
from paramscope.core.init.initializer_base import (
    Initializer,
    InitializerError,
    derived_seed,
    params_from_signature,
)
from paramscope.core.sources.user_code import UserCodeError, run_python_file


@dataclass(frozen=True)
class CustomSource:
    """Where a custom initializer came from: ``file.py:f``, ``pkg.mod:f`` or typed source text."""

    kind: str  # "file", "module" or "text"
    location: str  # path, module name, or the source text itself
    function: str

    @property
    def label(self) -> str:
        if self.kind == "text":
            return f"custom:{self.function}"
        return f"{self.location}:{self.function}"


class CustomInitializer(Initializer):
    """A user's ``f(tensor, generator)`` or ``f(tensor)``; runs the user's own Python code.

    Extra keyword arguments of ``f`` become form fields (``f(tensor, low=5.0, high=10.0)``).
    """

    def __init__(self, function: Callable[..., Any], source: CustomSource) -> None:
        self.function = function
        self.source = source
        self.name = source.label
        self.title = (inspect.getdoc(function) or "").split("\n")[0] or f"custom initializer {source.function}"
        signature = inspect.signature(function)
        positional = [
            p
            for p in signature.parameters.values()
            if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]
        if not positional:
            raise InitializerError(f"{source.label}: an initializer takes the tensor as first argument")
        names = [p.name for p in signature.parameters.values()]
        # f(tensor, generator) -> second positional is the generator, whatever its name.
        self._generator_keyword: str | None = None
        self._generator_positional = False
        if "generator" in names:
            self._generator_keyword = "generator"
        elif len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
            self._generator_positional = True
        self.takes_generator = self._generator_keyword is not None or self._generator_positional
        skip = 2 if self._generator_positional else 1
        self.params, _ = params_from_signature(function, skip=skip)

    def apply(self, tensor: torch.Tensor, kwargs: dict[str, Any], generator: torch.Generator) -> None:
        with torch.no_grad():
            if self._generator_positional:
                self.function(tensor, generator, **kwargs)
            elif self._generator_keyword:
                self.function(tensor, **kwargs, generator=generator)
            else:
                seed = derived_seed(generator)
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    self.function(tensor, **kwargs)

    def replay_lines(self, target: str, kwargs: dict[str, Any], dtype: torch.dtype | None = None) -> list[str]:
        # ``custom`` is bound by the replay script's preamble (see replay.py).
        args = [target] + [f"{k}={format_value(v)}" for k, v in kwargs.items()]
        if self._generator_positional:
            return [f"custom({target}, g{''.join(', ' + a for a in args[1:])})"]
        if self._generator_keyword:
            return [f"custom({', '.join(args + ['generator=g'])})"]
        return [
            "with torch.random.fork_rng(devices=[]):",
            "    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g).item()))",
            f"    custom({', '.join(args)})",
        ]



def _pick_function(namespace: dict[str, Any], function: str | None, where: str) -> tuple[Callable[..., Any], str]:
    if function:
        obj = namespace.get(function)
        if obj is None:
            raise InitializerError(f"{where}: no function named {function!r}")
        if not callable(obj):
            raise InitializerError(f"{where}: {function!r} is not a function")
        return obj, function
    # No name given: the last function the source defines (not imported ones).
    defined = [
        (name, obj)
        for name, obj in namespace.items()
        if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == namespace.get("__name__")
    ]
    if not defined:
        raise InitializerError(f"{where}: defines no function; write def my_init_(tensor, generator): ...")
    name, obj = defined[-1]
    return obj, name


def load_custom_from_file(path: str | Path, function: str) -> CustomInitializer:
    """Run ``path`` (the user's Python file) and take ``function`` from it."""
    path = Path(path).expanduser()
    where = f"{path}:{function}"
    try:
        module = run_python_file(path, prefix="_paramscope_init")
    except UserCodeError as exc:
        raise InitializerError(f"{where}: {str(exc).removeprefix(f'{path}: ')}") from exc.__cause__
    obj, name = _pick_function(vars(module), function, where)
    return CustomInitializer(obj, CustomSource("file", str(path.resolve()), name))


def load_custom_from_module(module_name: str, function: str) -> CustomInitializer:
    """Import ``module_name`` and take ``function`` from it."""
    where = f"{module_name}:{function}"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise InitializerError(f"{where}: import failed: {type(exc).__name__}: {exc}") from exc
    obj, name = _pick_function(vars(module), function, where)
    return CustomInitializer(obj, CustomSource("module", module_name, name))


def custom_from_source(text: str, function: str | None = None) -> CustomInitializer:
    """Run ``text`` (Python typed in the editor; this runs code on purpose) and take a function.

    ``torch``, ``nn`` and ``init`` are available without import. Without ``function`` the last
    function the text defines is used.
    """
    namespace: dict[str, Any] = {"__name__": "__paramscope_custom__", "torch": torch, "nn": nn, "init": torch_init}
    try:
        code = compile(text, "<custom initializer>", "exec")
    except SyntaxError as exc:
        raise InitializerError(f"custom initializer, line {exc.lineno}: {exc.msg}") from exc
    try:
        exec(code, namespace)  # noqa: S102 - the user's own initializer, run on purpose
    except Exception as exc:
        raise InitializerError(f"custom initializer failed to run: {type(exc).__name__}: {exc}") from exc
    obj, name = _pick_function(namespace, function, "custom initializer")
    return CustomInitializer(obj, CustomSource("text", text, name))


def load_custom(reference: str) -> CustomInitializer:
    """``path/file.py:function`` or ``package.module:function``."""
    head, sep, function = reference.strip().rpartition(":")
    if not sep or not head or not function.isidentifier():
        raise InitializerError(f"{reference!r}: expected FILE.py:FUNCTION or package.module:FUNCTION")
    if head.endswith(".py") or "/" in head or "\\" in head:
        return load_custom_from_file(head, function)
    return load_custom_from_module(head, function)


def is_custom_reference(name: str) -> bool:
    """Whether a rule's INIT names a custom function (``file.py:f``, ``pkg.mod:f``), not a catalogue entry."""
    return ":" in name


@dataclass
class LoadedCustom:
    """Cache so a rule naming the same file twice loads it once per request."""

    by_reference: dict[str, CustomInitializer] = field(default_factory=dict)

    def get(self, reference: str) -> CustomInitializer:
        if reference not in self.by_reference:
            self.by_reference[reference] = load_custom(reference)
        return self.by_reference[reference]

