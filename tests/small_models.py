"""Small models several test folders share (pytest puts ``tests/``, where the root conftest
lives, on the import path)."""

from __future__ import annotations

import torch
from torch import nn


class FailsInBackward(torch.autograd.Function):
    """Identity forward; backward raises ``RuntimeError("simulated failure in backward")``."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def, override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        raise RuntimeError("simulated failure in backward")


class TiedEmbedding(nn.Module):
    """A 7-token embedding tied to its output head (small: every per-use part keeps its values)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.head = nn.Linear(4, 7, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):  # type: ignore[no-untyped-def]
        return self.head(torch.tanh(self.embed(ids)))


class SharedRow(nn.Module):
    """``b`` is a view of row 1 of ``a`` (edited in place, never swapped); ``c`` stands alone."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(4, 4))
        self.b = nn.Parameter(torch.empty(0))
        self.b.data = self.a.data[1]
        self.c = nn.Parameter(torch.zeros(3, 3))
