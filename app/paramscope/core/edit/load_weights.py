"""Load a state_dict into the open model as one undoable command.

Applying is strict (every tensor must match) or partial (only the matching ones), as one
:class:`TensorEditCommand` through :meth:`Session.execute`, so it undoes in one step. Whether
the tensors fit is :mod:`paramscope.core.files.weights_fit`'s report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from paramscope.core.edit.commands import TensorEditCommand
from paramscope.core.errors import ParamscopeError
from paramscope.core.files.weights_fit import WeightsReport, compare_weights, model_tensors, refusal

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session


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
        raise refusal(report, where)
    if not report.matched:
        raise ParamscopeError(f"{where}: no tensor in it matches the model")
    mode = "" if strict else " (partial)"
    text = f"Load weights from {Path(where).name}{mode}"
    session.execute(weights_command(session.model, tensors, report, text, session.shared_storage))
    return report
