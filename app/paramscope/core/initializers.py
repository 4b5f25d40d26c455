"""The initializer catalogue: ``torch.nn.init`` itself, PyTorch's default, and custom functions.

Every entry calls the real function. Forms are generated from ``inspect.signature`` of the
torch function, so a new torch release with a new argument shows up without code here.

Three kinds of initializer:
- :class:`TorchInitializer`: ``uniform_``, ``normal_``, ... ``sparse_`` from ``torch.nn.init``.
- :class:`DefaultInitializer`: the owning module's ``reset_parameters()`` (PyTorch's default).
  It re-initializes *every* tensor of that module (``Linear.reset_parameters`` redraws weight
  and bias), so a request for ``0.weight`` also changes ``0.bias``; :meth:`affected` says which.
- :class:`CustomInitializer`: a user function ``f(tensor, generator)`` or ``f(tensor)``, loaded
  from ``file.py:function``, ``package.module:function`` or source text typed in the editor.
  This runs the user's Python code on purpose; that is what the user asked for.

Seeds: a request owns one ``torch.Generator``. Functions that take ``generator=`` get it;
those that use the global RNG (``reset_parameters``, custom ``f(tensor)``) run inside
``torch.random.fork_rng`` seeded with a number drawn from that generator, so they repeat too and
the user's global random stream is left as it was.
"""

from __future__ import annotations

import importlib
import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import init as torch_init

from paramscope.core.errors import ParamscopeError
from paramscope.core.report import is_lazy
from paramscope.core.tensor_stats import data_problem
from paramscope.core.user_code import UserCodeError, run_python_file


class InitializerError(ParamscopeError):
    """An unknown initializer, a bad argument, or a custom function that cannot be loaded."""


REQUIRED = object()  # default of a parameter that has none (constant_'s val, sparse_'s sparsity)

TORCH_INITIALIZERS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
)

# Initializers that need a tensor with fans (at least 2 dimensions, no zero-size dimension).
_FAN_BASED = {"xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"}
# Initializers that draw random numbers (need a floating-point tensor).
_RANDOM = {"uniform_", "normal_", "trunc_normal_", "orthogonal_", "sparse_"} | _FAN_BASED


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


def format_value(value: Any) -> str:
    """A value as Python source (the replay script and rule texts use it)."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"float({str(value)!r})"
        return repr(value)
    return repr(value)


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

    def replay_lines(self, target: str, kwargs: dict[str, Any]) -> list[str]:
        """Python lines that repeat :meth:`apply` on ``target`` (an expression) with ``g``."""
        raise NotImplementedError


class TorchInitializer(Initializer):
    """One function of ``torch.nn.init``, called as it is."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.function: Callable[..., torch.Tensor] = getattr(torch_init, name)
        self.params, self.takes_generator = params_from_signature(self.function)
        doc = inspect.getdoc(self.function) or ""
        self.title = doc.splitlines()[0] if doc else name

    def check(self, tensor: torch.Tensor, kwargs: dict[str, Any]) -> str | None:
        problem = super().check(tensor, kwargs)
        if problem is not None:
            return problem
        dims = tensor.dim()
        name = self.name
        if name == "eye_" and dims != 2:
            return f"eye_ needs a 2-D tensor, this one is {dims}-D"
        if name == "sparse_" and dims != 2:
            return f"sparse_ needs a 2-D tensor, this one is {dims}-D"
        if name == "dirac_":
            if dims not in (3, 4, 5):
                return f"dirac_ needs a 3-, 4- or 5-D tensor (a conv weight), this one is {dims}-D"
            groups = int(kwargs.get("groups", 1))
            if groups < 1 or tensor.shape[0] % groups:
                return f"dirac_: out_channels {tensor.shape[0]} is not divisible by groups={groups}"
        if name == "orthogonal_" and dims < 2:
            return f"orthogonal_ needs at least 2 dimensions, this one is {dims}-D"
        if name in _FAN_BASED:
            if dims < 2:
                return f"{name} needs fan_in and fan_out: at least 2 dimensions, this one is {dims}-D"
            if tensor.numel() == 0:
                return f"{name}: the tensor has no elements, fan_in/fan_out would be 0"
        if name in _RANDOM and not tensor.is_floating_point():
            return f"{name} draws random numbers: needs a floating-point tensor, this one is {tensor.dtype}"
        return None

    def apply(self, tensor: torch.Tensor, kwargs: dict[str, Any], generator: torch.Generator) -> None:
        # every torch.nn.init function turns gradients off itself: no second no_grad per tensor
        if self.takes_generator:
            self.function(tensor, **kwargs, generator=generator)
        else:
            self.function(tensor, **kwargs)

    def replay_lines(self, target: str, kwargs: dict[str, Any]) -> list[str]:
        args = [target] + [f"{k}={format_value(v)}" for k, v in kwargs.items()]
        if self.takes_generator:
            args.append("generator=g")
        return [f"init.{self.name}({', '.join(args)})"]


class DefaultInitializer(Initializer):
    """PyTorch's default: the owning module's ``reset_parameters()`` (for all of its tensors)."""

    name = "default"
    title = "PyTorch default: the owning module's reset_parameters()"
    acts_on_module = True

    def check_module(self, module: nn.Module) -> str | None:
        if not callable(getattr(module, "reset_parameters", None)):
            return f"{type(module).__name__} has no reset_parameters(): PyTorch has no default to restore"
        for tensor in list(module.parameters()) + list(module.buffers()):
            problem = Initializer.check(self, tensor, {})  # the same data checks as for one tensor
            if problem is not None:
                return problem
        return None

    def apply_module(self, module: nn.Module, generator: torch.Generator) -> None:
        seed = derived_seed(generator)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            module.reset_parameters()

    def replay_module_lines(self, module_expr: str) -> list[str]:
        return [
            "with torch.random.fork_rng(devices=[]):",
            "    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g).item()))",
            f"    {module_expr}.reset_parameters()",
        ]


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

    def check(self, tensor: torch.Tensor, kwargs: dict[str, Any]) -> str | None:
        return super().check(tensor, kwargs)

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

    def replay_lines(self, target: str, kwargs: dict[str, Any]) -> list[str]:
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


class LSUVInitializer(Initializer):
    """Layer-sequential unit variance (Mishkin & Matas 2016): see :mod:`paramscope.core.lsuv`.

    It acts on the whole model: an orthogonal start for every hit weight, then each hit's
    owning layer rescaled in forward order until its output std on the sample input is 1.
    It needs the model's forward and an input (``input='randn(256,64)'``, or the CLI's
    ``--input``); :meth:`request_problem` says so in one line when the input is missing.
    """

    name = "lsuv"
    title = "LSUV: orthogonal, then each layer rescaled to unit output std on a sample input (data-dependent)"
    takes_generator = True
    acts_on_model = True
    needs_input = True

    def __init__(self) -> None:
        from paramscope.core.lsuv import DEFAULT_MAX_ITER, DEFAULT_TOL

        self.params = (
            ParamSpec("tol", "float", DEFAULT_TOL),
            ParamSpec("max_iter", "int", DEFAULT_MAX_ITER),
            ParamSpec("input", "str", ""),
        )

    def check(self, tensor: torch.Tensor, kwargs: dict[str, Any]) -> str | None:
        problem = super().check(tensor, kwargs)
        if problem is not None:
            return problem
        if tensor.dim() < 2:
            return f"lsuv starts from orthogonal_: needs a weight matrix (2-D or more), this one is {tensor.dim()}-D"
        if not tensor.is_floating_point():
            return f"lsuv needs a floating-point tensor, this one is {tensor.dtype}"
        return None

    def request_problem(self, kwargs: dict[str, Any]) -> str | None:
        """Why the request as a whole cannot run (no input, a bad one), or None."""
        from paramscope.core.input_specs import InputSpecError, parse_input_spec
        from paramscope.core.lsuv import MISSING_INPUT

        text = str(kwargs.get("input") or "").strip()
        if not text:
            return MISSING_INPUT
        try:
            parse_input_spec(text)
        except InputSpecError as exc:
            return f"lsuv input: {exc}"
        if kwargs.get("tol", 1.0) <= 0:
            return f"lsuv: tol must be positive, got {kwargs['tol']!r}"
        if kwargs.get("max_iter", 0) < 0:
            return f"lsuv: max_iter must be 0 or more, got {kwargs['max_iter']!r}"
        return None

    def apply_model(self, model: nn.Module, names: list[str], kwargs: dict[str, Any],
                    generator: torch.Generator) -> list[str]:  # fmt: skip
        """Run LSUV on ``model``'s weights ``names``; returns the notes (skipped layers)."""
        from paramscope.core.lsuv import lsuv_

        result = lsuv_(model, names, kwargs["input"], tol=kwargs["tol"], max_iter=kwargs["max_iter"],
                       generator=generator)  # fmt: skip
        return result.notes

    def replay_model_lines(self, names: list[str], kwargs: dict[str, Any]) -> list[str]:
        return [
            "from paramscope.core.lsuv import lsuv_",
            f"lsuv_(model, {names!r}, {kwargs['input']!r}, tol={format_value(kwargs['tol'])}, "
            f"max_iter={kwargs['max_iter']!r}, generator=g)",
        ]


CATALOGUE: dict[str, Initializer] = {name: TorchInitializer(name) for name in TORCH_INITIALIZERS}
CATALOGUE["default"] = DefaultInitializer()
CATALOGUE["lsuv"] = LSUVInitializer()


def get_initializer(name: str) -> Initializer:
    """The catalogue entry for ``name``, with or without the trailing underscore.

    Example:
        >>> get_initializer("normal").name
        'normal_'
    """
    key = name.strip()
    if key in ("default", "reset_parameters", "default_"):
        return CATALOGUE["default"]
    if key in ("lsuv", "lsuv_"):
        return CATALOGUE["lsuv"]
    if not key.endswith("_"):
        key += "_"
    if key in CATALOGUE:
        return CATALOGUE[key]
    known = ", ".join(n.rstrip("_") for n in CATALOGUE)
    raise InitializerError(f"unknown initializer {name!r}; known: {known}, or FILE.py:FUNCTION")


# --- custom initializers -------------------------------------------------------------------

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
    return ":" in name


def owner_module_name(tensor_name: str) -> str:
    return tensor_name.rpartition(".")[0]


def module_tensors(model: nn.Module, module_name: str) -> list[str]:
    """Qualified names of every parameter and buffer under ``module_name`` (what reset may change)."""
    module = model.get_submodule(module_name)
    prefix = f"{module_name}." if module_name else ""
    names = [prefix + n for n, _ in module.named_parameters()]
    names += [prefix + n for n, _ in module.named_buffers()]
    return names


@dataclass
class LoadedCustom:
    """Cache so a rule naming the same file twice loads it once per request."""

    by_reference: dict[str, CustomInitializer] = field(default_factory=dict)

    def get(self, reference: str) -> CustomInitializer:
        if reference not in self.by_reference:
            self.by_reference[reference] = load_custom(reference)
        return self.by_reference[reference]


__all__ = [
    "CATALOGUE",
    "REQUIRED",
    "TORCH_INITIALIZERS",
    "CustomInitializer",
    "CustomSource",
    "DefaultInitializer",
    "Initializer",
    "InitializerError",
    "LSUVInitializer",
    "ParamSpec",
    "TorchInitializer",
    "custom_from_source",
    "get_initializer",
    "load_custom",
    "nonlinearity_names",
]
