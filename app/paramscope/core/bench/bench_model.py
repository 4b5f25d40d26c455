"""The benchmark's model: a compact GPT-2, built in process (no download).

:data:`FULL` has GPT-2 small's shapes (124.4M parameters, head tied to the token embedding);
:data:`QUICK` is the same architecture small enough for a smoke test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab: int = 50257
    context: int = 1024
    dim: int = 768
    layers: int = 12
    heads: int = 12


FULL = GPTConfig()
QUICK = GPTConfig(vocab=512, context=64, dim=64, layers=2, heads=4)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln_1 = nn.LayerNorm(cfg.dim)
        self.c_attn = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.c_proj = nn.Linear(cfg.dim, cfg.dim)
        self.ln_2 = nn.LayerNorm(cfg.dim)
        self.c_fc = nn.Linear(cfg.dim, 4 * cfg.dim)
        self.mlp_proj = nn.Linear(4 * cfg.dim, cfg.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    """GPT-2 small's shapes: 124.4M parameters with the head tied to the token embedding."""

    def __init__(self, cfg: GPTConfig = FULL) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab, cfg.dim)
        self.wpe = nn.Embedding(cfg.context, cfg.dim)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.dim)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build_gpt2(cfg: GPTConfig = FULL, seed: int = 0) -> GPT2:
    """The benchmark model, initialized like GPT-2 (normal std 0.02, zero biases)."""
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = GPT2(cfg)
    model = model.to_empty(device="cpu")
    model.lm_head.weight = model.wte.weight
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.dim() == 1:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def distinct_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Each parameter once (the tied head is the embedding), detached."""
    return list({id(p): p.detach() for p in model.parameters()}.values())
