"""A training run's checkpoints over time: per tensor and per module, how the weights moved.

``paramscope series 'ckpts/step-*.safetensors'`` (a glob, a folder or a list, local or by URL)
orders the checkpoints by the step in their names (file order where a name has none) and gives,
per tensor and per step: norm, std, max |w|, NaN and Inf counts, and the relative change
‖W_t − W_prev‖ / ‖W_prev‖ and ‖W_t − W_first‖ / ‖W_first‖. Per module (the tensors directly in
it) the same, pooled. Checkpoints open lazily where their format allows (safetensors, by URL
too), and the work goes tensor by tensor, so at most three copies of one tensor are in memory.
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paramscope.core.errors import SourceError, shown
from paramscope.core.files.safetensors_io import natural_key
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.model import kernels
from paramscope.core.model.dtypes import holds_numbers
from paramscope.core.model.extreme_values import (
    SAFE_SMALL,
    largest_finite,
    scale_exponent,
    scaled,
    times_power_of_two,
)
from paramscope.core.model.tensor_stats import tensor_stats
from paramscope.core.tasks import TaskState, ensure_state

_GLOB = re.compile(r"[*?\[]")
_STEP = re.compile(r"(?:step|iter|iteration|global_step|checkpoint|ckpt)[=_-]?(\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"(\d+)")
_SUFFIXES = (".safetensors", ".json", ".pt", ".pth", ".bin", ".ckpt")
_CHUNK = 1 << 22


# ||b - a|| and ||a|| in units of 2**k, and k: 0 unless their squares would leave float64 (values
# past 1e154 or all below 1e-154), see extreme_values
Change = tuple[float, float, int]


@dataclass(frozen=True)
class SeriesPoint:
    """One tensor (or module) at one step."""

    numel: int
    norm: float | None
    mean: float | None
    std: float | None
    max_abs: float | None
    nan: int
    inf: int
    rel_prev: float | None = None  # None at the first step, or where the shape changed
    rel_first: float | None = None
    # kept to pool modules: (||W - prev||, ||prev||) and (||W - first||, ||first||), see Change
    change: tuple[Change, Change] | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "norm": self.norm,
            "std": self.std,
            "max_abs": self.max_abs,
            "nan": self.nan,
            "inf": self.inf,
            "rel_prev": self.rel_prev,
            "rel_first": self.rel_first,
        }


@dataclass
class SeriesRow:
    name: str
    shape: list[int] | None
    dtype: str | None
    points: list[SeriesPoint | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "shape": self.shape,
            "dtype": self.dtype,
            "steps": [None if p is None else p.to_dict() for p in self.points],
        }


@dataclass
class Series:
    sources: list[str]
    steps: list[int | None]
    tensors: list[SeriesRow]
    modules: list[SeriesRow]

    def to_dict(self) -> dict[str, object]:
        return {
            "checkpoints": [{"source": s, "step": t} for s, t in zip(self.sources, self.steps, strict=True)],
            "tensors": [r.to_dict() for r in self.tensors],
            "modules": [r.to_dict() for r in self.modules],
        }


# ------------------------------------------------------------------------------ finding them


def find_checkpoints(specs: list[str]) -> list[str]:
    """The checkpoints named by ``specs``: each a glob, a folder (its checkpoints) or a source."""
    from paramscope.core.files.remote_io import is_remote

    found: list[str] = []
    for spec in specs:
        if is_remote(spec):
            found.append(spec)
        elif _GLOB.search(spec):
            matches = sorted(glob.glob(str(Path(spec).expanduser())))
            if not matches:
                raise SourceError(f"{shown(spec)}: matches no file")
            found.extend(matches)
        elif Path(spec).expanduser().is_dir() and len(specs) == 1:
            found.extend(_in_folder(Path(spec).expanduser()))
        else:
            found.append(spec)
    if len(found) < 2:
        raise SourceError(f"{shown(' '.join(specs))}: a series needs two checkpoints or more, found {len(found)}")
    return found


def _in_folder(folder: Path) -> list[str]:
    """A run's folder: its checkpoint files, or its checkpoint folders (``checkpoint-500/``)."""
    entries = sorted(folder.iterdir(), key=lambda p: natural_key(p.name))
    files = [p for p in entries if p.is_file() and p.name.endswith(_SUFFIXES) and not p.name.endswith(".index.json")]
    folders = [p for p in entries if p.is_dir() and _NUMBER.search(p.name)]
    chosen = files if len(files) >= 2 else folders
    if len(chosen) < 2:
        raise SourceError(f"{folder}: holds no run of checkpoints (files or numbered folders)")
    return [str(p) for p in chosen]


def step_of(spec: str) -> int | None:
    """The training step in a checkpoint's name: after ``step``/``iter``/``checkpoint`` where it
    says so, else the last number of its last name that has one; None without any."""
    parts = [p for p in re.split(r"[/\\]", spec.rstrip("/\\")) if p][-2:]
    for part in reversed(parts):
        stem = part
        for suffix in _SUFFIXES:
            stem = stem.removesuffix(suffix)
        labelled = _STEP.findall(stem)
        if labelled:
            return int(labelled[-1])
    for part in reversed(parts):
        numbers = _NUMBER.findall(part.split(".")[0])
        if numbers:
            return int(numbers[-1])
    return None


def ordered(specs: list[str]) -> tuple[list[str], list[int | None]]:
    """By step when every name has one (and they differ), else in the order given."""
    steps = [step_of(s) for s in specs]
    if all(s is not None for s in steps) and len(set(steps)) == len(steps):
        pairs = sorted(zip(steps, specs, strict=True))
        return [s for _, s in pairs], [t for t, _ in pairs]
    return list(specs), [None] * len(specs)


def open_checkpoint(spec: str, trust: bool = False) -> Checkpoint:
    """Tensors of one checkpoint: placeholders and a loader where the format allows."""
    from paramscope.core.files.remote_io import is_remote

    if is_remote(spec):
        from paramscope.core.files.remote import read_remote_checkpoint

        return read_remote_checkpoint(spec)
    from paramscope.core.files.readers import read_checkpoint

    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"{shown(spec)}: no such file or folder")
    return read_checkpoint(path, trust=trust, lazy=True)


# ------------------------------------------------------------------------------- measuring


def _values(checkpoint: Checkpoint, name: str) -> torch.Tensor | None:
    tensor = checkpoint.tensors.get(name)
    if tensor is None:
        return None
    if tensor.device.type == "meta" and checkpoint.loader is not None:
        return checkpoint.loader(name)
    return tensor


def _change(a: torch.Tensor, b: torch.Tensor) -> Change:
    """``(‖b − a‖, ‖a‖, k)``: the norms in units of ``2**k``, in float64 a chunk at a time."""
    delta, base = _chunked_norms(a, b, 0)
    if math.isfinite(delta) and SAFE_SMALL <= base < math.inf:
        return delta, base, 0
    k = scale_exponent(largest_finite(a), largest_finite(b))
    return (*_chunked_norms(a, b, k), k) if k else (delta, base, 0)


def _chunked_norms(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[float, float]:
    fa, fb = a.detach().reshape(-1), b.detach().reshape(-1)
    delta: list[float] = []
    base: list[float] = []
    for start in range(0, fa.numel(), _CHUNK):
        pa = fa[start : start + _CHUNK].to(torch.float64)
        pb = fb[start : start + _CHUNK].to(torch.float64)
        if k:
            pa, pb = scaled(pa, k), scaled(pb, k)
        delta.append(float(torch.linalg.vector_norm(pb - pa)))
        base.append(float(torch.linalg.vector_norm(pa)))
    return math.hypot(*delta), math.hypot(*base)  # (hypot scales: no square leaves float64)


def _pooled_ratio(changes: list[Change]) -> float:
    """‖Δ‖ / ‖base‖ of tensors together: their norms brought to one unit, then combined."""
    top = max(k for _, _, k in changes)
    delta = math.hypot(*(times_power_of_two(d, k - top) for d, _, k in changes))
    base = math.hypot(*(times_power_of_two(b, k - top) for _, b, k in changes))
    return _ratio(delta, base)


def _ratio(delta: float, base: float) -> float:
    if base == 0.0:
        return 0.0 if delta == 0.0 else math.inf
    return delta / base


def _point(tensor: torch.Tensor, prev: torch.Tensor | None, first: torch.Tensor | None) -> SeriesPoint:
    stats = tensor_stats(tensor)
    extremes = [abs(v) for v in (stats.min, stats.max) if v is not None]
    change = None
    rel_prev = rel_first = None
    if prev is not None and first is not None and not tensor.is_complex() and holds_numbers(tensor.dtype):
        change = _change(prev, tensor), _change(first, tensor)
        rel_prev, rel_first = _ratio(*change[0][:2]), _ratio(*change[1][:2])
    return SeriesPoint(
        numel=stats.finite,
        norm=stats.norm,
        mean=stats.mean,
        std=stats.std,
        max_abs=max(extremes) if extremes else None,
        nan=stats.nan,
        inf=stats.inf,
        rel_prev=rel_prev,
        rel_first=rel_first,
        change=change,
    )


def _tensor_row(name: str, checkpoints: list[Checkpoint]) -> SeriesRow:
    row = SeriesRow(name, None, None)
    first: torch.Tensor | None = None
    prev: torch.Tensor | None = None
    for checkpoint in checkpoints:
        tensor = _values(checkpoint, name)
        if tensor is None:
            row.points.append(None)
            continue
        if row.shape is None:
            row.shape, row.dtype = list(tensor.shape), str(tensor.dtype).removeprefix("torch.")
        same = prev is not None and first is not None and prev.shape == tensor.shape == first.shape
        row.points.append(_point(tensor, prev if same else None, first if same else None))
        if first is None:
            first = tensor
        prev = tensor
    return row


def module_rows(tensors: list[SeriesRow], steps: int) -> list[SeriesRow]:
    """Each module's tensors (those directly in it) pooled per step."""
    groups: dict[str, list[SeriesRow]] = {}
    for row in tensors:
        groups.setdefault(row.name.rpartition(".")[0], []).append(row)
    return [SeriesRow(module or "(root)", None, None, [_pooled([r.points[i] for r in rows]) for i in range(steps)]) for module, rows in groups.items()]


def _pooled(points: Iterable[SeriesPoint | None]) -> SeriesPoint | None:
    present = [p for p in points if p is not None]
    if not present:
        return None
    with_values = [p for p in present if p.mean is not None and p.std is not None and p.numel]
    count = sum(p.numel for p in with_values)
    mean, std = _pooled_moments(with_values, count) if count else (None, None)
    norms = [p.norm for p in present if p.norm is not None]
    maxima = [p.max_abs for p in present if p.max_abs is not None]
    rel_prev = rel_first = None
    if all(p.change is not None for p in present):
        rel_prev = _pooled_ratio([p.change[0] for p in present])  # type: ignore[index]
        rel_first = _pooled_ratio([p.change[1] for p in present])  # type: ignore[index]
    return SeriesPoint(
        numel=count,
        norm=math.hypot(*norms) if norms else None,
        mean=mean,
        std=std,
        max_abs=max(maxima) if maxima else None,
        nan=sum(p.nan for p in present),
        inf=sum(p.inf for p in present),
        rel_prev=rel_prev,
        rel_first=rel_first,
    )


def _pooled_moments(points: list[SeriesPoint], count: int) -> tuple[float, float]:
    """Mean and sample std (n - 1, as tensor_stats gives them) of the points' values together,
    in units of their largest magnitude (a square of 1e200 overflows Python's float)."""
    unit = max(abs(p.mean) + p.std for p in points) or 1.0  # type: ignore[operator]
    mean = sum(p.numel * (p.mean / unit) for p in points) / count  # type: ignore[operator]
    squares = sum((p.numel - 1) * (p.std / unit) ** 2 + p.numel * (p.mean / unit) ** 2 for p in points)  # type: ignore[operator]
    std = math.sqrt(max(0.0, (squares - count * mean**2) / (count - 1))) if count > 1 else 0.0
    return mean * unit, std * unit


def series_part(
    sources: list[str], trust: bool, opener: Callable[[str, bool], Checkpoint], names: list[str]
) -> dict[str, SeriesRow]:
    """What one Dask worker does: open every checkpoint (headers only where lazy), the rows of ``names``."""
    checkpoints = [opener(source, trust) for source in sources]
    return {name: _tensor_row(name, checkpoints) for name in names}


def compute_series(
    specs: list[str],
    trust: bool = False,
    state: TaskState | None = None,
    opener: Callable[[str, bool], Checkpoint] = open_checkpoint,
    scheduler: str | None = None,
) -> Series:
    """The series of the checkpoints ``specs`` name (see :func:`find_checkpoints`).

    With a ``scheduler`` (as ``paramscope audit --scheduler``: ``local:N`` or ``tcp://HOST:PORT``)
    the tensors' rows are computed on Dask workers, each reading its tensors itself, by the same
    function: the numbers are bit-identical. ``opener`` must then be a module-level function.
    """
    state = ensure_state(state)
    sources, steps = ordered(find_checkpoints(specs))
    checkpoints = []
    for i, source in enumerate(sources):
        state.progress(0.1 * i / len(sources), f"opening {shown(source)}")
        checkpoints.append(opener(source, trust))
    sizes: dict[str, int] = {}
    for checkpoint in checkpoints:
        for name, tensor in checkpoint.tensors.items():
            sizes[name] = max(sizes.get(name, 1), tensor.numel() * tensor.element_size())
    ordered_names = sorted(sizes, key=natural_key)
    if scheduler is None:
        from paramscope.core.runs.audit import job_compiled

        rows = []
        with kernels.policy(job_compiled(sizes)):  # as the workers of a scheduler would choose
            for i, name in enumerate(ordered_names):
                state.progress(0.1 + 0.9 * i / max(1, len(ordered_names)), name)
                rows.append(_tensor_row(name, checkpoints))
    else:
        from paramscope.core.runs.audit import map_on_dask

        del checkpoints  # the workers open their own
        found = map_on_dask(scheduler, series_part, (sources, trust, opener), sizes, _Scaled(state, 0.1))
        rows = [found[name] for name in ordered_names]
    state.progress(1.0, "done")
    from paramscope.core.files.remote_io import is_remote, shown_url

    shown_sources = [shown_url(s) if is_remote(s) else s for s in sources]
    return Series(shown_sources, steps, rows, module_rows(rows, len(sources)))


class _Scaled(TaskState):
    """``state``'s progress from ``start`` to 1 (the opening took the rest), its cancel."""

    def __init__(self, state: TaskState, start: float) -> None:
        super().__init__()
        self._state, self._start = state, start

    def check(self) -> None:
        self._state.check()

    @property
    def cancelled(self) -> bool:
        return self._state.cancelled

    def progress(self, fraction: float, message: str = "") -> None:
        self._state.progress(self._start + (1 - self._start) * fraction, message)
