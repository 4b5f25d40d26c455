"""A GPT-2-shaped model with GPT-2's long names (12 blocks), small enough for a quick test."""

from __future__ import annotations

from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.ModuleDict({"c_attn": nn.Linear(width, 3 * width), "c_proj": nn.Linear(width, width)})
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.ModuleDict({"c_fc": nn.Linear(width, 4 * width), "c_proj": nn.Linear(4 * width, width)})

    def forward(self, x):
        x = x + self.attn["c_proj"](self.attn["c_attn"](self.ln_1(x))[..., : x.shape[-1]])
        return x + self.mlp["c_proj"](self.mlp["c_fc"](self.ln_2(x)).relu())


class LongNamedTransformerLanguageModel(nn.Module):
    def __init__(self, width: int = 16, layers: int = 12) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            {"h": nn.ModuleList(Block(width) for _ in range(layers)), "ln_f": nn.LayerNorm(width)}
        )
        self.lm_head_projection_to_vocabulary = nn.Linear(width, 50)

    def forward(self, x):
        for block in self.transformer["h"]:
            x = block(x)
        return self.lm_head_projection_to_vocabulary(self.transformer["ln_f"](x))


model = LongNamedTransformerLanguageModel()
