"""Whether a set of tensors fits a model: missing, unexpected and mismatched keys, ties counted.

A tied tensor reached under several names needs only one of them in the file. The report also
suggests a key change (a wrapper's ``module.`` prefix, PEFT's adapter name) when one makes the
tensors fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.key_match import KeyMapping, remap, suggest_mapping
from paramscope.core.model.report import build_report, is_lazy


@dataclass(frozen=True)
class KeyMismatch:
    name: str  # the model's canonical name
    key: str  # the file's key
    model_shape: tuple[int, ...] | None
    file_shape: tuple[int, ...]
    model_dtype: str
    file_dtype: str
    reason: str

    def describe(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class TieConflict:
    """The file holds different values under names that are one tied tensor in the model."""

    name: str  # the model's canonical name
    kept: str  # the file key whose values are loaded (the last, as torch keeps)
    differing: tuple[str, ...]  # the file keys whose values differ and are not loaded

    def describe(self) -> str:
        return f"{self.kept} is loaded into the tied {self.name}; {', '.join(self.differing)} in the file differs and is not"


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    if "meta" in (a.device.type, b.device.type):  # a lazily opened file: values not read, no conflict said
        return a.shape == b.shape and a.dtype == b.dtype
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


@dataclass
class WeightsReport:
    """How a state_dict fits a model. ``matched`` maps model canonical names to file keys."""

    matched: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[KeyMismatch] = field(default_factory=list)
    converted: list[KeyMismatch] = field(default_factory=list)  # float precision differs: cast
    tied_satisfied: list[str] = field(default_factory=list)  # aliases absent but their tensor loaded
    suggestion: KeyMapping | None = None  # a key change that makes more keys match
    lazy: list[str] = field(default_factory=list)  # uninitialized (lazy) in the model: take the file's shape
    tie_conflicts: list[TieConflict] = field(default_factory=list)  # one tied tensor, different values in the file

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: counts of each kind."""
        parts = [f"{len(self.matched)} matching"]
        parts.append(f"{len(self.missing)} missing")
        parts.append(f"{len(self.unexpected)} unexpected")
        parts.append(f"{len(self.mismatched)} mismatched")
        if self.converted:
            parts.append(f"{len(self.converted)} converted to the model's dtype")
        if self.tie_conflicts:
            parts.append(f"{len(self.tie_conflicts)} tied tensor(s) with different values in the file ({self.tie_conflicts[0].describe()})")
        hint = f"; keys match after {self.suggestion.describe()} ({self.suggestion.option})" if self.suggestion else ""
        return ", ".join(parts) + hint

    def details(self, limit: int = 3) -> str:
        bits = []
        if self.missing:
            bits.append("missing e.g. " + ", ".join(self.missing[:limit]))
        if self.unexpected:
            bits.append("unexpected e.g. " + ", ".join(self.unexpected[:limit]))
        if self.mismatched:
            bits.append("mismatched e.g. " + "; ".join(m.describe() for m in self.mismatched[:limit]))
        return "; ".join(bits)

    def to_dict(self) -> dict[str, object]:
        return {
            "matched": dict(self.matched),
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [m.__dict__ for m in self.mismatched],
            "converted": [m.__dict__ for m in self.converted],
            "tied_satisfied": list(self.tied_satisfied),
            "fits": self.fits,
            "suggested_key_change": self.suggestion.describe() if self.suggestion else None,
            "tie_conflicts": [c.__dict__ | {"differing": list(c.differing)} for c in self.tie_conflicts],
        }


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _kind(t: torch.Tensor) -> str:
    if t.dtype == torch.bool:
        return "bool"
    if t.is_complex():
        return "complex"
    return "float" if t.is_floating_point() else "int"


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every name (aliases included) of the model's parameters and buffers."""
    out: dict[str, torch.Tensor] = dict(model.named_parameters(remove_duplicate=False))
    out.update(dict(model.named_buffers(remove_duplicate=False)))
    return out


def compare_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> WeightsReport:
    """Say which of ``tensors`` (file key -> tensor) fit ``model`` and which do not.

    Args:
        model: the open model.
        tensors: the file's tensors, every alias included.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> compare_weights(net, {"weight": torch.zeros(1, 2)}).missing
        ['bias']
    """
    report = build_report(model)
    live = model_tensors(model)
    result = WeightsReport()
    used: set[str] = set()
    infos = list(report.parameters.values()) + [b for b in report.buffers.values() if b.persistent]
    known = {alias for info in infos for alias in info.aliases}
    known |= {alias for b in report.buffers.values() for alias in b.aliases}
    for info in infos:
        present = [a for a in info.aliases if a in tensors]
        if not present:
            result.missing.append(info.name)
            continue
        key = present[-1]  # torch's load_state_dict copies each alias in turn: the last stays
        used.update(present)
        differing = [a for a in present[:-1] if not _same_values(tensors[a], tensors[key])]
        if differing:
            result.tie_conflicts.append(TieConflict(info.name, key, tuple(differing)))
        result.tied_satisfied.extend(a for a in info.aliases if a not in tensors)
        mine, theirs = live[info.name], tensors[key]
        shape = None if is_lazy(mine) else tuple(mine.shape)
        mismatch = KeyMismatch(info.name, key, shape, tuple(theirs.shape), _dtype_name(mine), _dtype_name(theirs), "")
        if shape is None:  # a lazy layer takes the file's shape, as load_state_dict does
            result.matched[info.name] = key
            result.lazy.append(info.name)
        elif shape != tuple(theirs.shape):
            result.mismatched.append(_with(mismatch, f"shape {list(shape)} in the model, {list(theirs.shape)} in the file"))
        elif _kind(mine) != _kind(theirs):
            result.mismatched.append(_with(mismatch, f"dtype {mismatch.model_dtype} in the model, {mismatch.file_dtype} in the file"))
        else:
            result.matched[info.name] = key
            if mine.dtype != theirs.dtype:
                result.converted.append(_with(mismatch, f"{mismatch.file_dtype} in the file, cast to {mismatch.model_dtype}"))
    result.unexpected = [k for k in tensors if k not in used and k not in known]
    if not result.fits:
        result.suggestion = suggest_mapping(known, tensors)
    return result


def mapped_keys(tensors: dict[str, torch.Tensor], report: WeightsReport, strip_prefix: str, where: str) -> dict[str, torch.Tensor]:
    """The file's tensors under the keys ``--strip-prefix`` asks for (``auto``: the suggestion)."""
    if strip_prefix != "auto":
        return remap(tensors, KeyMapping(strip=strip_prefix))
    if report.suggestion is None:
        raise ParamscopeError(f"{where}: no prefix or adapter name makes more of its keys match the model")
    return remap(tensors, report.suggestion)


def _with(m: KeyMismatch, reason: str) -> KeyMismatch:
    return KeyMismatch(m.name, m.key, m.model_shape, m.file_shape, m.model_dtype, m.file_dtype, reason)


def refusal(report: WeightsReport, where: str) -> ParamscopeError:
    detail = report.details()
    return ParamscopeError(
        f"{where}: does not fit the model ({report.summary()})" + (f": {detail}" if detail else "")
    )
