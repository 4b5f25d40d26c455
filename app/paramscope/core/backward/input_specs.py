"""Sample input specs: a small grammar for a forward's inputs, parsed and never evaluated.

Spec grammar (several inputs separated by ``;`` make a tuple of positional arguments)::

    rand(2, 4)                   uniform [0, 1), as the tutorial's torch.rand(2, 4)
    randn(2, 4, dtype=float64)   standard normal
    ones(1, 1) / zeros(3)        constants
    randint(2, 16, high=100)     token ids in [low, high); low=0 by default
    path/to/input.pt             a tensor or a tuple/list of tensors (torch.load weights_only=True)
    sample=rand(1, 3, 32, 32)    a keyword argument of forward (after the positional ones)

Random inputs come from a ``torch.Generator`` seeded with the given seed, so the global RNG is
never touched and the same spec and seed give the same tensors. What a model's input probably
is (when the user gives none) is :mod:`paramscope.core.backward.inputs`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paramscope.core.errors import ParamscopeError


class InputSpecError(ParamscopeError):
    """An input spec that cannot be parsed or loaded."""


FUNCTIONS = ("rand", "randn", "ones", "zeros", "randint")
_DTYPES: dict[str, torch.dtype] = {
    name: getattr(torch, name)
    for name in (
        "float16", "bfloat16", "float32", "float64", "half", "float", "double",
        "int8", "int16", "int32", "int64", "uint8", "long", "int", "bool",
    )
}
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.S)
_INT = re.compile(r"^[+-]?\d+$")
_KEYWORDS = {"dtype", "low", "high"}
_MAX_ELEMENTS = 1 << 28  # refuse absurd shapes before allocating


@dataclass(frozen=True)
class TensorItem:
    """One generated input: ``kind(*shape, dtype=..., low=..., high=...)``."""

    kind: str
    shape: tuple[int, ...]
    dtype: torch.dtype | None = None  # None: float32, or the model's float dtype when known
    low: int = 0
    high: int | None = None

    def text(self) -> str:
        parts = [str(n) for n in self.shape]
        if self.kind == "randint":
            if self.low:
                parts.append(f"low={self.low}")
            parts.append(f"high={self.high}")
        if self.dtype is not None:
            parts.append(f"dtype={str(self.dtype).removeprefix('torch.')}")
        return f"{self.kind}({', '.join(parts)})"

    def make(self, generator: torch.Generator, float_dtype: torch.dtype | None) -> torch.Tensor:
        if self.kind == "randint":
            assert self.high is not None
            dtype = self.dtype or torch.int64
            try:
                return torch.randint(self.low, self.high, self.shape, generator=generator, dtype=dtype)
            except (RuntimeError, ValueError, OverflowError) as exc:  # low/high outside the dtype
                raise InputSpecError(f"input spec {self.text()!r}: {exc}") from exc
        dtype = self.dtype or float_dtype or torch.float32
        if self.kind == "rand":
            return torch.rand(self.shape, generator=generator, dtype=dtype)
        if self.kind == "randn":
            return torch.randn(self.shape, generator=generator, dtype=dtype)
        if self.kind == "ones":
            return torch.ones(self.shape, dtype=dtype)
        return torch.zeros(self.shape, dtype=dtype)


@dataclass(frozen=True)
class FileItem:
    """Inputs stored in a ``.pt`` file: one tensor, or a tuple/list of tensors."""

    path: Path

    def text(self) -> str:
        return str(self.path)

    def load(self) -> tuple[torch.Tensor, ...]:
        path = self.path
        if not path.is_file():
            raise InputSpecError(f"{path}: no such input file")
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch's own message suggests an unsafe load: never do that
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputSpecError(
                f"{path}: not a tensor file torch can load safely ({first[:160]})"
            ) from exc
        if isinstance(loaded, torch.Tensor):
            return (loaded,)
        if isinstance(loaded, tuple | list) and loaded and all(isinstance(t, torch.Tensor) for t in loaded):
            return tuple(loaded)
        raise InputSpecError(
            f"{path}: holds {type(loaded).__name__}, expected a tensor or a tuple of tensors"
        )


InputItem = TensorItem | FileItem


@dataclass(frozen=True)
class InputSpec:
    """Parsed input spec: positional inputs of the model's forward, in order.

    Example:
        >>> spec = InputSpec.parse("rand(2, 4); randint(2, 8, high=100)")
        >>> [tuple(t.shape) for t in spec.make(seed=0)]
        [(2, 4), (2, 8)]
    """

    items: tuple[InputItem, ...]
    note: str | None = field(default=None, compare=False)  # why this default was chosen, if a guess
    # The keyword of each item (None: positional), parallel to ``items``; empty: all positional.
    keywords: tuple[str | None, ...] = ()

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        return parse_input_spec(text)

    @property
    def text(self) -> str:
        return "; ".join(
            f"{key}={item.text()}" if key else item.text()
            for item, key in zip(self.items, self._keys(), strict=True)
        )

    def _keys(self) -> tuple[str | None, ...]:
        return self.keywords or (None,) * len(self.items)

    def __str__(self) -> str:
        return self.text

    def make(
        self,
        seed: int | None = 0,
        *,
        device: torch.device | str | None = None,
        float_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Build the input tensors.

        Args:
            seed: seed of the generator for random items (None: a fresh random seed).
            device: where to put the tensors (default: CPU).
            float_dtype: dtype of floating items without an explicit ``dtype=`` (e.g. the
                model's, so a float64 model gets float64 inputs). Default float32.
        """
        return tuple(t for _, _, made in self._made(seed, device, float_dtype) for t in made)

    def make_call(
        self,
        seed: int | None = 0,
        *,
        device: torch.device | str | None = None,
        float_dtype: torch.dtype | None = None,
    ) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        """The forward's positional and keyword arguments (see :meth:`make`).

        Example:
            >>> args, kwargs = InputSpec.parse("rand(2); timestep=ones(1)").make_call()
            >>> len(args), list(kwargs)
            (1, ['timestep'])
        """
        args: list[torch.Tensor] = []
        kwargs: dict[str, torch.Tensor] = {}
        for key, item, made in self._made(seed, device, float_dtype):
            if key is None:
                args.extend(made)
            elif len(made) != 1:
                raise InputSpecError(f"input spec {key}={item.text()}: a keyword takes one tensor, the file holds {len(made)}")
            else:
                kwargs[key] = made[0]
        return tuple(args), kwargs

    def _made(
        self, seed: int | None, device: torch.device | str | None, float_dtype: torch.dtype | None
    ) -> Iterator[tuple[str | None, InputItem, tuple[torch.Tensor, ...]]]:
        """Each item's keyword (None: positional), the item and its tensors, made in order."""
        generator = _generator(seed)
        float_dtype = input_float_dtype(float_dtype)
        for item, key in zip(self.items, self._keys(), strict=True):
            made = item.load() if isinstance(item, FileItem) else (item.make(generator, float_dtype),)
            if device is not None:
                made = tuple(t.to(device) for t in made)
            yield key, item, made


def _generator(seed: int | None) -> torch.Generator:
    """The generator of a spec's random items: seeded with ``seed``, or freshly when None."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


# Float dtypes random inputs can be drawn in; others (float8 variants) get float32 inputs, as a
# user's torch.rand(...) would be before any cast the model itself makes.
_INPUT_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def input_float_dtype(dtype: torch.dtype | None) -> torch.dtype | None:
    """The model's float dtype when inputs can be made in it, else float32 (None stays None).

    Example:
        >>> input_float_dtype(torch.float8_e4m3fn), input_float_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    if dtype is None or dtype in _INPUT_FLOATS:
        return dtype
    return torch.float32


def _parse_int(text: str, spec: str, what: str) -> int:
    if not _INT.match(text):
        raise InputSpecError(f"input spec {spec!r}: {what} must be an integer, got {text!r}")
    if len(text) > 30:  # far past any real size; int() refuses thousands of digits
        raise InputSpecError(f"input spec {spec!r}: {what} {text[:12]}... is too large")
    return int(text)


def _parse_call(item: str, spec: str) -> TensorItem:
    match = _CALL.match(item)
    if match is None:
        raise InputSpecError(
            f"input spec {item!r}: expected rand(...), randn(...), ones(...), zeros(...), "
            "randint(..., high=N) or a .pt file"
        )
    kind, body = match.group(1), match.group(2)
    if kind not in FUNCTIONS:
        raise InputSpecError(f"input spec {item!r}: unknown function {kind!r}; known: {', '.join(FUNCTIONS)}")
    shape: list[int] = []
    keywords: dict[str, str] = {}
    args = [a.strip() for a in body.split(",")] if body.strip() else []
    for arg in args:
        if not arg:
            raise InputSpecError(f"input spec {item!r}: empty argument")
        if "=" in arg:
            key, _, value = (s.strip() for s in arg.partition("="))
            if key not in _KEYWORDS:
                raise InputSpecError(f"input spec {item!r}: unknown keyword {key!r}; known: dtype, low, high")
            if key in keywords:
                raise InputSpecError(f"input spec {item!r}: {key} given twice")
            keywords[key] = value
        else:
            if keywords:
                raise InputSpecError(f"input spec {item!r}: sizes must come before keywords")
            size = _parse_int(arg, item, "a size")
            if size < 0:
                raise InputSpecError(f"input spec {item!r}: negative size {size}")
            shape.append(size)
    dtype = None
    if "dtype" in keywords:
        name = keywords["dtype"].removeprefix("torch.")
        if name not in _DTYPES:
            raise InputSpecError(f"input spec {item!r}: unknown dtype {keywords['dtype']!r}")
        dtype = _DTYPES[name]
    numel = 1
    for size in shape:
        numel *= size
    if numel > _MAX_ELEMENTS:
        raise InputSpecError(f"input spec {item!r}: {numel:,} elements is too large for a sample input")
    if kind != "randint":
        if "low" in keywords or "high" in keywords:
            raise InputSpecError(f"input spec {item!r}: low/high only apply to randint")
        if dtype is not None and not (dtype.is_floating_point or kind in ("ones", "zeros")):
            raise InputSpecError(f"input spec {item!r}: {kind} needs a floating dtype")
        return TensorItem(kind, tuple(shape), dtype)
    if "high" not in keywords:
        raise InputSpecError(f"input spec {item!r}: randint needs high=N (ids are drawn from [low, high))")
    high = _parse_int(keywords["high"], item, "high")
    low = _parse_int(keywords.get("low", "0"), item, "low")
    if high <= low:
        raise InputSpecError(f"input spec {item!r}: high ({high}) must be greater than low ({low})")
    if dtype is not None and dtype.is_floating_point:
        raise InputSpecError(f"input spec {item!r}: randint makes integers, dtype {keywords['dtype']} is floating")
    return TensorItem(kind, tuple(shape), dtype, low, high)


def parse_input_spec(text: str) -> InputSpec:
    """Parse an input spec (see the module docstring); raise :class:`InputSpecError` if bad.

    Example:
        >>> parse_input_spec("randint(2, 16, high=100)").text
        'randint(2, 16, high=100)'
    """
    if not text or not text.strip():
        raise InputSpecError("empty input spec: give e.g. rand(2, 4)")
    items: list[InputItem] = []
    keys: list[str | None] = []
    for raw in text.split(";"):
        item = raw.strip()
        if not item:
            raise InputSpecError(f"input spec {text!r}: empty input between ';'")
        key, item = _keyword(item, text)
        if key is None and any(keys):
            raise InputSpecError(f"input spec {text!r}: positional input {item!r} after a keyword input")
        if key is not None and key in keys:
            raise InputSpecError(f"input spec {text!r}: keyword {key!r} given twice")
        keys.append(key)
        if "(" not in item:
            if "\x00" in item:  # (no file has such a name, and expanduser raises on it)
                raise InputSpecError(f"input spec {text!r}: {item!r} holds a NUL character, which no file name has")
            try:
                path = Path(item).expanduser()
            except RuntimeError:  # ~user of an unknown user: keep the text, load() says it is missing
                path = Path(item)
            items.append(FileItem(path))
        else:
            items.append(_parse_call(item, text))
    return InputSpec(tuple(items), keywords=tuple(keys) if any(keys) else ())


_KEYWORD = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(\S.*)$", re.S)


def _keyword(item: str, spec: str) -> tuple[str | None, str]:
    """``name=rest`` (a forward keyword argument) or ``(None, item)``; ``rand(2, dtype=...)``
    is no keyword since ``(`` comes before its ``=``."""
    match = _KEYWORD.match(item)
    if match is None:
        if re.match(r"^[A-Za-z_]\w*\s*=\s*$", item):
            raise InputSpecError(f"input spec {spec!r}: keyword {item.split('=')[0].strip()!r} has no value")
        return None, item
    return match.group(1), match.group(2).strip()
