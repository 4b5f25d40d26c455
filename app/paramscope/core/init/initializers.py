"""The initializer catalogue: ``torch.nn.init`` itself, PyTorch's default, and LSUV.

Every entry calls the real function. Forms are generated from ``inspect.signature`` of the
torch function (:mod:`paramscope.core.init.initializer_base`), so a new torch release with a new
argument shows up without code here.

- :class:`TorchInitializer`: ``uniform_``, ``normal_``, ... ``sparse_`` from ``torch.nn.init``.
- :class:`DefaultInitializer`: the owning module's ``reset_parameters()`` (PyTorch's default).
  It re-initializes *every* tensor of that module (``Linear.reset_parameters`` redraws weight
  and bias), so a request for ``0.weight`` also changes ``0.bias``.
- :class:`LSUVInitializer`: data-dependent, on the whole model (:mod:`paramscope.core.init.lsuv`).
- A user's own function is a :class:`~paramscope.core.init.custom_init.CustomInitializer`.

Seeds: a request owns one ``torch.Generator``. Functions that take ``generator=`` get it;
those that use the global RNG (``reset_parameters``, custom ``f(tensor)``) run inside
``torch.random.fork_rng`` seeded with a number drawn from that generator, so they repeat too and
the user's global random stream is left as it was.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import init as torch_init

from paramscope.core.edit.replay import format_value
from paramscope.core.init.initializer_base import (
    Initializer,
    InitializerError,
    ParamSpec,
    derived_seed,
    params_from_signature,
)
from paramscope.core.model.dtypes import computed_in, holds_numbers, no_numbers_reason

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


def drawn_in_float32(name: str, dtype: torch.dtype) -> bool:
    """Whether ``init.<name>`` has no torch kernel for ``dtype`` and draws into float32 instead,
    rounded into the tensor (as one would by hand): random numbers into float8 ("normal_kernel_cpu
    not implemented for 'Float8_e4m3fn'"), and orthogonal_'s QR in bfloat16 and float16, the
    dtype most large checkpoints come in ("geqrf_cpu not implemented for 'BFloat16'")."""
    if name not in _RANDOM or not dtype.is_floating_point:
        return False
    return computed_in(dtype) == torch.float32 or (name == "orthogonal_" and dtype in (torch.float16, torch.bfloat16))


# torch's trunc_normal_ (2.13) draws uniformly in [a, b] and keeps each draw with the normal's density
# there: a mean far outside [a, b] kept one draw in millions, and the window froze for minutes.
MIN_ACCEPTANCE = 0.05  # ~3 s for a million elements here (0.002: 80 s)


def trunc_normal_acceptance(mean: float, std: float, a: float, b: float) -> float:
    """The share of draws ``torch.nn.init.trunc_normal_`` keeps for these arguments (1 where over
    30% of the normal lies in [a, b]: it then draws from the normal itself).

    Example:
        >>> trunc_normal_acceptance(0.0, 1.0, -2.0, 2.0)
        1.0
        >>> round(trunc_normal_acceptance(100.0, 0.01, -1.0, 2.5), 9)  # std² / ((b - a)·distance)
        2.93e-07
    """
    def cdf(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    inside = cdf((b - mean) / std) - cdf((a - mean) / std)
    if inside > 0.3:
        return 1.0
    z = (max(a, min(mean, b)) - mean) / std  # the density's peak in [a, b], in std from the mean
    if abs(z) < 30.0 and inside > 0.0:
        return min(1.0, math.sqrt(2.0 * math.pi) * std * inside / ((b - a) * math.exp(-0.5 * z * z)))
    return std / ((b - a) * abs(z))  # the far tail, where the density underflows: its asymptote


def _argument_problem(name: str, kwargs: dict[str, Any]) -> str | None:
    """What torch would fail on, or silently misuse, in these arguments (said before applying:
    ``trunc_normal_`` with std=0 divided by zero mid-apply; ``sparse_`` took sparsity=2)."""
    std, a, b = kwargs.get("std"), kwargs.get("a"), kwargs.get("b")
    if name == "trunc_normal_":
        if std is not None and not std > 0:
            return f"trunc_normal_: std must be positive, got {std!r}"
        if a is not None and b is not None and not a < b:
            return f"trunc_normal_: the bounds need a < b, got a={a!r}, b={b!r}"
        mean, std, a, b = kwargs.get("mean", 0.0), std or 1.0, -2.0 if a is None else a, 2.0 if b is None else b
        kept = trunc_normal_acceptance(mean, std, a, b)
        if kept < MIN_ACCEPTANCE:
            return (
                f"trunc_normal_: mean {mean:g} lies {abs(max(a, min(mean, b)) - mean) / std:.3g} std outside [a, b] = "
                f"[{a:g}, {b:g}]: torch's sampler would keep about 1 draw in {1 / kept:,.0f} and run for minutes "
                "(move the mean toward [a, b] or widen std)"
            )
    if name == "normal_" and std is not None and not std >= 0:
        return f"normal_: std must be 0 or more, got {std!r}"
    if name == "uniform_" and a is not None and b is not None and not a <= b:
        return f"uniform_: the range needs a <= b, got a={a!r}, b={b!r}"
    sparsity = kwargs.get("sparsity")
    if name == "sparse_" and sparsity is not None and not 0 <= sparsity <= 1:
        return f"sparse_: sparsity is the fraction of each column set to zero, from 0 to 1; got {sparsity!r}"
    return None


# An element's cost against a normal_ edit's (~12 ns with the snapshot and two summaries, one
# CPU thread, torch 2.13): trunc_normal_ adds ~43 ns, sparse_ ~10 ns; orthogonal_'s QR costs one
# such element per ~175 of its multiply-adds (a 2048x2048 weight: 0.6 s, ten times a normal_ edit).
_SLOWER_FILLS = {"trunc_normal_": 4.5, "sparse_": 2.0}
_QR_PER_ELEMENT = 175


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
        argument_problem = _argument_problem(self.name, kwargs)
        if argument_problem is not None:
            return argument_problem
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
        if not holds_numbers(tensor.dtype):
            return no_numbers_reason(tensor.dtype)
        return None

    def work(self, shape: tuple[int, ...]) -> float:
        """orthogonal_ is a QR of the (rows, rest) matrix, rows·rest·min(rows, rest) multiply-adds;
        trunc_normal_ and sparse_ draw element by element, slower than normal_."""
        numel = math.prod(shape)
        if self.name == "orthogonal_" and len(shape) >= 2 and numel:
            rows = shape[0]
            rest = numel // rows
            return numel + rows * rest * min(rows, rest) / _QR_PER_ELEMENT
        return numel * _SLOWER_FILLS.get(self.name, 1)

    def apply(self, tensor: torch.Tensor, kwargs: dict[str, Any], generator: torch.Generator) -> None:
        if drawn_in_float32(self.name, tensor.dtype):
            drawn = torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device)
            self._call(drawn, kwargs, generator)
            with torch.no_grad():
                tensor.copy_(drawn)
        else:
            self._call(tensor, kwargs, generator)

    def _call(self, tensor: torch.Tensor, kwargs: dict[str, Any], generator: torch.Generator) -> None:
        # every torch.nn.init function turns gradients off itself: no second no_grad per tensor
        if self.takes_generator:
            self.function(tensor, **kwargs, generator=generator)
        else:
            self.function(tensor, **kwargs)

    def replay_lines(self, target: str, kwargs: dict[str, Any], dtype: torch.dtype | None = None) -> list[str]:
        """``dtype``: the target's, when known (a dtype torch has no kernel for draws in float32)."""
        args = [target] + [f"{k}={format_value(v)}" for k, v in kwargs.items()]
        if self.takes_generator:
            args.append("generator=g")
        if dtype is not None and drawn_in_float32(self.name, dtype):
            return [f"in_float32(init.{self.name}, {', '.join(args)})"]
        return [f"init.{self.name}({', '.join(args)})"]


class DefaultInitializer(Initializer):
    """PyTorch's default: the owning module's ``reset_parameters()`` (for all of its tensors)."""

    name = "default"
    title = "PyTorch default: the owning module's reset_parameters()"
    acts_on_module = True

    def check_module(self, module: nn.Module, tensors: list[torch.Tensor]) -> str | None:
        """Why ``module`` cannot be reset, or None; ``tensors``: its parameters and buffers (of a
        lazily opened model, stand-ins of their shapes: see ``Session.checkable``)."""
        if not callable(getattr(module, "reset_parameters", None)):
            return f"{type(module).__name__} has no reset_parameters(): PyTorch has no default to restore"
        for tensor in tensors:
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


class LSUVInitializer(Initializer):
    """Layer-sequential unit variance (Mishkin & Matas 2016): see :mod:`paramscope.core.init.lsuv`.

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
        from paramscope.core.init.lsuv import DEFAULT_MAX_ITER, DEFAULT_TOL

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
        from paramscope.core.backward.input_specs import InputSpecError, parse_input_spec
        from paramscope.core.init.lsuv import MISSING_INPUT

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
        from paramscope.core.init.lsuv import lsuv_

        result = lsuv_(model, names, kwargs["input"], tol=kwargs["tol"], max_iter=kwargs["max_iter"],
                       generator=generator)  # fmt: skip
        return result.notes

    def replay_model_lines(self, names: list[str], kwargs: dict[str, Any]) -> list[str]:
        return [
            "from paramscope.core.init.lsuv import lsuv_",
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
