"""Built-in demo models, opened as ``demo:NAME``.

The first three are the parameters tutorial's own models; the others each show one thing a
practitioner meets in real models (buffers, weight tying, recurrent weights, lazy layers,
signal propagation through depth).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class MyModel(nn.Module):
    """The tutorial's model: ``weight1`` is a Parameter, ``weight2`` a plain (unregistered) tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.weight1 = nn.Parameter(torch.rand(20, 20))
        self.weight2 = torch.rand(20, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight1 + x @ self.weight2


class SmallCNN(nn.Module):
    """Conv + BatchNorm (running statistics are buffers) + a linear classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, kernel_size=3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class TinyLM(nn.Module):
    """A small language model whose output head shares its weight with the token embedding."""

    def __init__(self, vocab: int = 100, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(64, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight  # weight tying, as in GPT-2

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos[: tokens.shape[-1]]
        return self.head(self.norm(self.blocks(x)))


class LSTMTagger(nn.Module):
    """Embedding, a two-layer LSTM and a tag classifier."""

    def __init__(self, vocab: int = 50, dim: int = 16, hidden: int = 24, tags: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=2, batch_first=True)
        self.tag = nn.Linear(hidden, tags)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.tag(out)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))


def _shared() -> nn.Module:
    linear = nn.Linear(1, 1, bias=False)
    return nn.Sequential(linear, linear)


def _lazy() -> nn.Module:
    return nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.Linear(8, 2))


def _deep_mlp(depth: int = 20, width: int = 64) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(width, width)]
    for _ in range(depth - 1):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Demo:
    name: str
    description: str
    factory: Callable[[], nn.Module]


DEMOS: dict[str, Demo] = {
    d.name: d
    for d in (
        Demo("mlp", "the tutorial's Sequential(Linear(4, 3), ReLU(), Linear(3, 1))", _mlp),
        Demo("unregistered", "the tutorial's MyModel: weight1 a Parameter, weight2 a plain tensor", MyModel),
        Demo("shared", "the tutorial's Sequential(linear, linear): one weight under two names", _shared),
        Demo("cnn", "a small CNN with BatchNorm (running statistics are buffers)", SmallCNN),
        Demo("tiny_lm", "a small transformer language model, head tied to the token embedding", TinyLM),
        Demo("lstm", "an embedding, a two-layer LSTM and a classifier", LSTMTagger),
        Demo("lazy", "Sequential(LazyLinear(8), ...): parameters without shape until a forward", _lazy),
        Demo("deep_mlp", "20 Linear+ReLU layers of width 64, for watching signal propagation", _deep_mlp),
    )
}


def build_demo(name: str, seed: int | None = 0) -> nn.Module:
    """Build demo ``name``; with a seed its initial weights are the same every time.

    The global RNG is left as it was, so building a demo never changes a user's random stream.
    """
    if name not in DEMOS:
        known = ", ".join(DEMOS)
        raise KeyError(f"unknown demo {name!r}; known demos: {known}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return DEMOS[name].factory()
