"""Weights from any source (a file, a URL, ``demo:``, ``file.py:NAME``), and ``--weights FILE``.

Reading never changes a model; :func:`load_weights_into` fills a freshly opened one (not
undoable: there is nothing to undo to yet). Loading into an open session is
:mod:`paramscope.core.edit.load_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.statedict import Checkpoint
from paramscope.core.files.weights_fit import (
    WeightsReport,
    compare_weights,
    mapped_keys,
    model_tensors,
    refusal,
)
from paramscope.core.tasks import TaskState, ensure_state, part

if TYPE_CHECKING:
    from paramscope.core.files.opened import OpenedModel


def read_weights(
    source: str | Path, trust: bool = False, entry: str | None = None, state: TaskState | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of any state_dict source: a file, a URL, or a model source (``demo:``, ``file.py:NAME``).

    ``entry``: the weight set of a checkpoint holding several (``"ema"``); ``state``: progress
    and cancel while a file is read.
    """
    from paramscope.core.files.readers import state_dict_of

    return state_dict_of(weights_checkpoint(source, trust, entry, state))


def weights_checkpoint(
    source: str | Path, trust: bool = False, entry: str | None = None, state: TaskState | None = None
) -> Checkpoint:
    """What :func:`read_weights` reads, with the file's notes, extras and optimizer states."""
    from paramscope.core.files.readers import read_checkpoint
    from paramscope.core.files.remote_io import is_remote

    if is_remote(str(source)):  # read by ranges, every tensor
        from paramscope.core.files.remote import read_remote_tensors

        return Checkpoint(read_remote_tensors(str(source).strip()))
    path = Path(source).expanduser()
    if path.exists():
        return read_checkpoint(path, trust, entry=entry, state=state)
    from paramscope.core.files.statedict import split_checkpoint
    from paramscope.core.sources.sources import open_source

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
    tensors = read_weights(inputs.source, inputs.trust, state=part(state, 0.0, 0.8))
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
    state: TaskState | None = None,
) -> WeightsReport:
    """Load the state_dict at ``path`` into a freshly opened model (``--weights FILE``).

    ``strip_prefix`` removes that prefix from the file's keys first; ``"auto"`` applies the key
    change the report suggests (a wrapper's prefix, PEFT's adapter name). ``entry`` picks the
    weight set of a checkpoint holding several; ``state`` reports its reading. What the
    checkpoint holds beside the weights (epoch, optimizer state...) goes to ``opened``'s notes
    and extras.

    Raises:
        ParamscopeError: the file cannot be read, or (strict) its keys do not fit the model.
    """
    from paramscope.core.files.readers import state_dict_of

    checkpoint = weights_checkpoint(path, trust, entry, state)
    tensors = state_dict_of(checkpoint)
    report = compare_weights(opened.model, tensors)
    adapter = False
    if strip_prefix is not None:
        adapter = strip_prefix == "auto" and report.suggestion is not None and bool(report.suggestion.insert)
        tensors = mapped_keys(tensors, report, strip_prefix, str(path))
        report = compare_weights(opened.model, tensors)
    # an adapter file holds the adapter only: the base weights stay, as PEFT loads it
    if strict and not report.fits and not (adapter and not report.unexpected and not report.mismatched):
        raise refusal(report, str(path))
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
