"""What opening a source gives: the model, where it came from, and what the user should know."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from paramscope.core.files.optimizer_state import OptimizerSummary


@dataclass
class OpenedModel:
    """A model opened from a source, with what the UI needs to know about it."""

    model: nn.Module
    source: str
    kind: str  # "demo", "python", "state_dict", "torchscript", "export", ...
    forward_unavailable: str | None = None  # why forward/backward cannot run, if so
    path: Path | None = None
    notes: list[str] = field(default_factory=list)  # things worth telling the user
    extras: dict[str, object] = field(default_factory=dict)  # non-tensor checkpoint entries
    # For sources opened lazily: the model holds shape-only (meta) placeholders and this loads
    # the full values of one of them, by its state_dict name, when they are needed.
    loader: Callable[[str], torch.Tensor] | None = None
    entry: str | None = None  # the checkpoint entry the weights came from ("model", "ema")
    entries: list[str] = field(default_factory=list)  # every entry of the file holding weights
    optimizers: list[OptimizerSummary] = field(default_factory=list)  # optimizer states beside them

    @property
    def can_forward(self) -> bool:
        return self.forward_unavailable is None

    @property
    def title(self) -> str:
        return self.source
