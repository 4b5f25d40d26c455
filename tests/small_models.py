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


class StackedExperts(nn.Module):
    """Three experts' 4 -> 6 matrices in one tensor, as transformers 5 keeps a mixture of experts
    (``(experts, out, in)``, or ``(experts, in, out)`` where ``is_transposed``)."""

    def __init__(self, is_transposed: bool) -> None:
        super().__init__()
        self.is_transposed = is_transposed
        self.up = nn.Parameter(torch.randn((3, 4, 6) if is_transposed else (3, 6, 4)))


def tiny_mixtral(**sizes: int) -> nn.Module:
    """A transformers MixtralForCausalLM (experts stacked in 3-D parameters) from a tiny config;
    ``sizes`` override its fields. Skips the test without transformers."""
    import pytest

    transformers = pytest.importorskip("transformers")
    fields = dict(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, num_local_experts=2, num_experts_per_tok=1,
    )  # fmt: skip
    return transformers.MixtralForCausalLM(transformers.MixtralConfig(**(fields | sizes)))
