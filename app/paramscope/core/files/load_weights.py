"""Load a state_dict into the open model: first a report, then one undoable command.

The report lists missing, unexpected and mismatched keys with ties taken into account: a tied
tensor reached under several names needs only one of them in the file. Applying is strict (every
tensor must match) or partial (only the matching ones), as one :class:`TensorEditCommand`
through :meth:`Session.execute`, so it undoes in one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from paramscope.core.commands import TensorEditCommand
from paramscope.core.errors import ParamscopeError
from paramscope.core.files.key_match import KeyMapping, remap, suggest_mapping
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.report import build_report, is_lazy
from paramscope.core.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from paramscope.core.session import Session
    from paramscope.core.sources import OpenedModel


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


def _refuse(report: WeightsReport, where: str) -> ParamscopeError:
    detail = report.details()
    return ParamscopeError(
        f"{where}: does not fit the model ({report.summary()})" + (f": {detail}" if detail else "")
    )


def weights_command(
    model: nn.Module,
    tensors: dict[str, torch.Tensor],
    report: WeightsReport,
    text: str,
    shared: frozenset[str] | None = None,
) -> TensorEditCommand:
    """One command copying every matched tensor (cast to the model's dtype) into the model."""
    live = model_tensors(model)
    pairs = [(name, live[name], tensors[key]) for name, key in report.matched.items()]

    def mutate() -> None:
        for _, target, source in pairs:
            target.detach().copy_(source.to(device=target.device, dtype=target.dtype))

    targets = [(name, target) for name, target, _ in pairs]
    return TensorEditCommand(text, targets, mutate, overwrites=True, shared=shared)


def apply_weights(
    session: Session,
    tensors: dict[str, torch.Tensor],
    *,
    strict: bool = True,
    where: str = "weights",
    report: WeightsReport | None = None,
) -> WeightsReport:
    """Load ``tensors`` into the session's model as one undoable command.

    Args:
        session: the open session.
        tensors: file key -> tensor, aliases included.
        strict: refuse unless every key fits; otherwise load only the matching tensors.
        where: the file or source, for the command text and messages.
        report: a report computed before (for the dialog that showed it).

    Raises:
        ParamscopeError: strict and the weights do not fit; nothing changes.
    """
    report = report or compare_weights(session.model, tensors)
    if report.lazy:  # materializing changes the model's structure, which no command undoes
        raise ParamscopeError(f"{report.lazy[0]}: uninitialized (lazy) parameter; run a forward first, or open the model with --weights")
    if strict and not report.fits:
        raise _refuse(report, where)
    if not report.matched:
        raise ParamscopeError(f"{where}: no tensor in it matches the model")
    mode = "" if strict else " (partial)"
    text = f"Load weights from {Path(where).name}{mode}"
    session.execute(weights_command(session.model, tensors, report, text, session.shared_storage))
    return report


def read_weights(source: str | Path, trust: bool = False, entry: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of any state_dict source: a file, a URL, or a model source (``demo:``, ``file.py:NAME``).

    ``entry``: the weight set of a checkpoint holding several (``"ema"``).
    """
    from paramscope.core.files.readers import state_dict_of

    return state_dict_of(weights_checkpoint(source, trust, entry))


def weights_checkpoint(source: str | Path, trust: bool = False, entry: str | None = None) -> Checkpoint:
    """What :func:`read_weights` reads, with the file's notes, extras and optimizer states."""
    from paramscope.core.files.readers import read_checkpoint
    from paramscope.core.files.remote_io import is_remote

    if is_remote(str(source)):  # read by ranges, every tensor
        from paramscope.core.files.remote import read_remote_tensors

        return Checkpoint(read_remote_tensors(str(source).strip()))
    path = Path(source).expanduser()
    if path.exists():
        return read_checkpoint(path, trust, entry=entry)
    from paramscope.core.files.statedict import split_checkpoint
    from paramscope.core.sources import open_source

    if entry is not None:
        raise ParamscopeError(f"{source}: --entry {entry} picks a weight set in a checkpoint file; this is not a file")
    # the state_dict may hold more than tensors (a quantized layer's dtype, packed tuples)
    model = open_source(str(source), trust=trust).model
    checkpoint = split_checkpoint({"state_dict": dict(model.state_dict())}, str(source))
    checkpoint.notes, checkpoint.entry, checkpoint.entries = [], None, []  # not a file's entry
    return checkpoint


@dataclass(frozen=True)
class WeightsInputs:
    source: str
    model: nn.Module
    trust: bool = False


def run_read_weights(inputs: WeightsInputs, state: TaskState | None = None) -> tuple[dict[str, torch.Tensor], WeightsReport]:
    """Worker entry: read the weights and compare them with the model (nothing is applied)."""
    state = ensure_state(state)
    state.progress(0.0, f"reading {inputs.source}")
    tensors = read_weights(inputs.source, inputs.trust)
    state.progress(0.8, "comparing with the model")
    report = compare_weights(inputs.model, tensors)
    state.progress(1.0, report.summary())
    return tensors, report


def load_weights_into(
    opened: OpenedModel,
    path: Path,
    strict: bool = True,
    trust: bool = False,
    strip_prefix: str | None = None,
    entry: str | None = None,
) -> WeightsReport:
    """Load the state_dict at ``path`` into a freshly opened model (``--weights FILE``).

    ``strip_prefix`` removes that prefix from the file's keys first; ``"auto"`` applies the key
    change the report suggests (a wrapper's prefix, PEFT's adapter name). ``entry`` picks the
    weight set of a checkpoint holding several. What the checkpoint holds beside the weights
    (epoch, optimizer state...) goes to ``opened``'s notes and extras.

    Raises:
        ParamscopeError: the file cannot be read, or (strict) its keys do not fit the model.
    """
    from paramscope.core.files.readers import state_dict_of

    checkpoint = weights_checkpoint(path, trust, entry)
    tensors = state_dict_of(checkpoint)
    report = compare_weights(opened.model, tensors)
    adapter = False
    if strip_prefix is not None:
        adapter = strip_prefix == "auto" and report.suggestion is not None and bool(report.suggestion.insert)
        tensors = mapped_keys(tensors, report, strip_prefix, str(path))
        report = compare_weights(opened.model, tensors)
    # an adapter file holds the adapter only: the base weights stay, as PEFT loads it
    if strict and not report.fits and not (adapter and not report.unexpected and not report.mismatched):
        raise _refuse(report, str(path))
    live = model_tensors(opened.model)
    with torch.no_grad():
        for name, key in report.matched.items():
            target, source = live[name], tensors[key]
            if name in report.lazy:
                target.materialize(source.shape, dtype=source.dtype)
            target.copy_(source.to(device=target.device, dtype=target.dtype))
    opened.notes.append(f"weights loaded from {path}: {report.summary()}")
    _keep_checkpoint_facts(opened, checkpoint, path)
    return report


def _keep_checkpoint_facts(opened: OpenedModel, checkpoint: Checkpoint, path: Path) -> None:
    """The ``--weights`` checkpoint's notes, extras and optimizer states, on the opened model."""
    from paramscope.core.files.optimizer_state import summarize_for_model

    opened.notes.extend(f"{path.name}: {note}" for note in checkpoint.notes)
    for key, value in checkpoint.extras.items():
        opened.extras.setdefault(key, value)
    summaries, notes = summarize_for_model(checkpoint.optimizer_states, opened.model)
    opened.optimizers.extend(summaries)
    opened.notes.extend(notes)
