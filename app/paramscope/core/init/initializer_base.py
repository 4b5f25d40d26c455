"""What every initializer has: its arguments as form fields, its checks, its replay lines.

An argument is a :class:`ParamSpec` read from the function's ``inspect.signature`` (so a new
torch argument shows up without code here); :class:`Initializer` is the base of the catalogue
(:mod:`paramscope.core.init.initializers`) and of custom functions (:mod:`paramscope.core.init.custom_init`).
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import init as torch_init

from paramscope.core.errors import ParamscopeError
from paramscope.core.model.report import is_lazy
from paramscope.core.model.tensor_stats import data_problem


class InitializerError(ParamscopeError):
    """An unknown initializer, a bad argument, or a custom function that cannot be loaded."""


REQUIRED = object()  # default of a parameter that has none (constant_'s val, sparse_'s sparsity)


def nonlinearity_names() -> tuple[str, ...]:
    """The names ``torch.nn.init.calculate_gain`` accepts, read from its signature."""
    annotation = inspect.signature(torch_init.calculate_gain).parameters["nonlinearity"].annotation
    names = typing.get_args(annotation)
    if names:
        return tuple(str(n) for n in names)
    return ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
            "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")  # fmt: skip


_FALLBACK_CHOICES: dict[str, tuple[str, ...]] = {"mode": ("fan_in", "fan_out")}


@dataclass(frozen=True)
class ParamSpec:
    """One argument of an initializer, as a form shows it.

    ``kind`` is ``float``, ``int``, ``bool``, ``choice`` or ``str``; ``default`` is
    :data:`REQUIRED` when the argument must be given.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this argument's type; ValueError says why not."""
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{self.name} must be a number, got {value!r}")
            return float(value)
        if self.kind == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{self.name} must be an integer, got {value!r}")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be True or False, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        return value


def _kind_of(name: str, annotation: Any, default: Any) -> tuple[str, tuple[str, ...]]:
    choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
    if choices:
        return "choice", tuple(str(c) for c in choices)
    if name == "nonlinearity":
        return "choice", nonlinearity_names()
    if name in _FALLBACK_CHOICES:
        return "choice", _FALLBACK_CHOICES[name]
    if annotation is bool or isinstance(default, bool):
        return "bool", ()
    if annotation is int or name == "groups":
        return "int", ()
    if annotation is float or isinstance(default, int | float) or annotation is inspect.Parameter.empty:
        return "float", ()
    return "str", ()


def params_from_signature(function: Callable[..., Any], skip: int = 1) -> tuple[tuple[ParamSpec, ...], bool]:
    """Form fields from ``function``'s signature, and whether it takes ``generator=``.

    The first ``skip`` parameters (the tensor) and ``generator`` are not form fields.
    """
    signature = inspect.signature(function)
    specs: list[ParamSpec] = []
    takes_generator = False
    for index, parameter in enumerate(signature.parameters.values()):
        if index < skip:
            continue
        if parameter.name == "generator":
            takes_generator = True
            continue
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        default = REQUIRED if parameter.default is inspect.Parameter.empty else parameter.default
        kind, choices = _kind_of(parameter.name, parameter.annotation, default)
        if kind == "float" and isinstance(default, int) and not isinstance(default, bool):
            default = float(default)
        specs.append(ParamSpec(parameter.name, kind, default, choices))
    return tuple(specs), takes_generator



def derived_seed(generator: torch.Generator) -> int:
    """A seed for the global RNG drawn from ``generator`` (for functions without generator=)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


class Initializer:
    """Base of the catalogue entries.

    Attributes:
        name: what rules and menus call it (``normal_``, ``default``, ``custom:my_init.py:f``).
        title: a short description for menus.
        params: the form fields.
        takes_generator: True if the function gets the request's generator itself.
    """

    name: str = ""
    title: str = ""
    params: tuple[ParamSpec, ...] = ()
    takes_generator: bool = False
    acts_on_module: bool = False
    acts_on_model: bool = False  # runs on the whole model at once (lsuv): apply_model
    needs_input: bool = False  # data-dependent: needs the model's forward and an input=

    def work(self, shape: tuple[int, ...]) -> float:
        """What initializing a tensor of ``shape`` costs, in elements of a ``normal_`` edit (the
        window computes an edit in a worker past a few million of them)."""
        return math.prod(shape)

    def request_problem(self, kwargs: dict[str, Any]) -> str | None:
        """Why a request with ``kwargs`` cannot run at all (beyond one tensor), or None."""
        return None

    def coerce_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Check and convert arguments; ValueError names the bad one. Defaults fill the rest."""
        specs = {p.name: p for p in self.params}
        unknown = [k for k in kwargs if k not in specs]
        if unknown:
            accepted = ", ".join(specs) or "no arguments"
            raise ValueError(f"{self.name} has no argument {unknown[0]!r} (accepts: {accepted})")
        result: dict[str, Any] = {}
        for spec in self.params:
            if spec.name in kwargs:
                result[spec.name] = spec.coerce(kwargs[spec.name])
            elif spec.required:
                raise ValueError(f"{self.name} needs {spec.name}=...")
            else:
                result[spec.name] = spec.default
        return result

    def check(self, tensor: torch.Tensor, kwargs: dict[str, Any]) -> str | None:
        """Why this initializer cannot apply to ``tensor``, or None if it can."""
        if is_lazy(tensor):
            return "uninitialized (lazy) parameter: run a forward pass first to give it a shape"
        problem = data_problem(tensor)
        if problem is not None:
            return problem
        return None

    def apply(self, tensor: torch.Tensor, kwargs: dict[str, Any], generator: torch.Generator) -> None:
        raise NotImplementedError

    def replay_lines(self, target: str, kwargs: dict[str, Any], dtype: torch.dtype | None = None) -> list[str]:
        """Python lines that repeat :meth:`apply` on ``target`` (an expression) with ``g``;
        ``dtype``: the target's, when known."""
        raise NotImplementedError
