"""The distribution an initializer should produce, from fan_in, fan_out and gain.

For ``normal_``, ``trunc_normal_``, ``uniform_``, ``xavier_*`` and ``kaiming_*`` this gives the
density (or uniform bounds), the numbers behind it and a line of text such as
``kaiming_normal_, fan_in=4, gain=√2 → std=0.707``. The fans and gain come from torch itself
(``_calculate_fan_in_and_fan_out``, ``calculate_gain``), so the text matches what torch does.

Example:
    >>> theory_for("kaiming_normal_", {"nonlinearity": "relu"}, (3, 4)).text
    'kaiming_normal_, fan_in=4, gain=√2 → std=0.707'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import init as torch_init

_THEORY_INITIALIZERS = {
    "normal_",
    "trunc_normal_",
    "uniform_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
}


@dataclass(frozen=True)
class Theory:
    """A theoretical distribution.

    Attributes:
        family: ``normal``, ``trunc_normal`` or ``uniform``.
        mean, std: of the underlying normal (for ``uniform``: of the uniform itself).
        low, high: bounds (uniform bounds, or trunc_normal's cut-offs); None for a plain normal.
        fan_in, fan_out, gain: what the numbers came from (None where not used).
        text: a one-line explanation for the plot.
    """

    initializer: str
    family: str
    mean: float
    std: float
    low: float | None
    high: float | None
    fan_in: int | None
    fan_out: int | None
    gain: float | None
    text: str

    def pdf(self, x: np.ndarray) -> np.ndarray:
        """The density at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        if self.family == "uniform":
            assert self.low is not None and self.high is not None
            width = self.high - self.low
            inside = (x >= self.low) & (x <= self.high)
            return np.where(inside, 1.0 / width if width > 0 else 0.0, 0.0)
        if self.std <= 0:
            return np.zeros_like(x)
        z = (x - self.mean) / self.std
        density = np.exp(-0.5 * z * z) / (self.std * math.sqrt(2 * math.pi))
        if self.family == "trunc_normal":
            assert self.low is not None and self.high is not None
            mass = _normal_cdf((self.high - self.mean) / self.std) - _normal_cdf((self.low - self.mean) / self.std)
            density = np.where((x >= self.low) & (x <= self.high), density / max(mass, 1e-300), 0.0)
        return density

    def curve(self, edges: np.ndarray, total: int, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: the density scaled to expected counts per bin of a histogram with ``edges``.

        ``y = pdf(x) * total * bin_width``, so it overlays the bars of a histogram of ``total`` values.
        """
        edges = np.asarray(edges, dtype=np.float64)
        lo, hi = float(edges[0]), float(edges[-1])
        width = (hi - lo) / max(len(edges) - 1, 1)
        x = np.linspace(lo, hi, points)
        if self.family == "uniform" and self.low is not None and self.high is not None:
            # include the jumps at the bounds so the step is drawn square
            extra = [v for b in (self.low, self.high) if lo <= b <= hi for v in (b - 1e-12 * max(1.0, abs(b)), b)]
            x = np.unique(np.concatenate([x, np.array(extra)]))
        return x, self.pdf(x) * total * width


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


_GAIN_NAMES = {math.sqrt(2.0): "√2", 5.0 / 3: "5/3", 1.0: "1", 0.75: "3/4"}


def gain_text(gain: float) -> str:
    for value, name in _GAIN_NAMES.items():
        if math.isclose(gain, value, rel_tol=1e-12):
            return name
    return f"{gain:.4g}"


def _fans(shape: Sequence[int]) -> tuple[int, int]:
    return torch_init._calculate_fan_in_and_fan_out(torch.empty(tuple(shape), device="meta"))


def theory_for(initializer: str, kwargs: dict[str, Any], shape: Sequence[int] | None) -> Theory | None:
    """The theoretical distribution of ``initializer`` with ``kwargs`` on a tensor of ``shape``.

    Returns None for initializers without a simple density (constant, eye, orthogonal, custom …)
    or shapes they cannot apply to.
    """
    name = initializer if initializer.endswith("_") else initializer + "_"
    if name not in _THEORY_INITIALIZERS or shape is None:
        return None
    if name == "normal_":
        mean, std = float(kwargs.get("mean", 0.0)), float(kwargs.get("std", 1.0))
        return Theory(name, "normal", mean, std, None, None, None, None, None, f"normal_, mean={mean:g}, std={std:g}")
    if name == "trunc_normal_":
        mean, std = float(kwargs.get("mean", 0.0)), float(kwargs.get("std", 1.0))
        a, b = float(kwargs.get("a", -2.0)), float(kwargs.get("b", 2.0))
        return Theory(name, "trunc_normal", mean, std, a, b, None, None, None,
                      f"trunc_normal_, mean={mean:g}, std={std:g}, cut at [{a:g}, {b:g}]")  # fmt: skip
    if name == "uniform_":
        a, b = float(kwargs.get("a", 0.0)), float(kwargs.get("b", 1.0))
        return Theory(name, "uniform", (a + b) / 2, (b - a) / math.sqrt(12), a, b, None, None, None,
                      f"uniform_ on [{a:g}, {b:g}]")  # fmt: skip
    if len(shape) < 2 or math.prod(shape) == 0:
        return None
    fan_in, fan_out = _fans(shape)
    if name.startswith("xavier"):
        gain = float(kwargs.get("gain", 1.0))
        std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        head = f"{name}, fan_in={fan_in}, fan_out={fan_out}, gain={gain_text(gain)}"
    else:
        mode = kwargs.get("mode", "fan_in")
        nonlinearity = kwargs.get("nonlinearity", "leaky_relu")
        gain = float(torch_init.calculate_gain(nonlinearity, kwargs.get("a", 0)))
        fan = fan_in if mode == "fan_in" else fan_out
        std = gain / math.sqrt(fan)
        head = f"{name}, {mode}={fan}, gain={gain_text(gain)}"
    if name.endswith("uniform_"):
        bound = math.sqrt(3.0) * std
        return Theory(name, "uniform", 0.0, std, -bound, bound, fan_in, fan_out, gain, f"{head} → bound=±{bound:.3g}")
    return Theory(name, "normal", 0.0, std, None, None, fan_in, fan_out, gain, f"{head} → std={std:.3g}")
