"""Unregistered tensors: no false alarms for references to registered tensors or empty modules."""

from __future__ import annotations

import torch
from torch import nn

from paramscope.core.model.report import build_report


def _flagged(model: nn.Module) -> list[tuple[str, str]]:
    return [(u.module, u.attribute) for u in build_report(model).unregistered]


def test_rnns_flat_weights_are_their_registered_parameters() -> None:
    for rnn in (nn.LSTM(3, 4, num_layers=2, bidirectional=True), nn.GRU(3, 4), nn.RNN(3, 4)):
        assert _flagged(nn.Sequential(rnn)) == []


class KernelTable(nn.Module):
    """Like transformers' attention: parameterless modules in a plain dict, a cached weight view."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 2)
        self._kernel_funcs = {"eager": nn.Identity(), "act": nn.GELU()}
        self.alias = self.proj.weight  # the registered parameter itself
        self.pair = [self.proj.weight, self.proj.bias]
        self.children_again = [self.proj]  # a registered module seen twice


class RealBugs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight2 = torch.zeros(2)
        self.layers = [nn.Linear(2, 2)]
        self.tensors = {"a": torch.ones(1)}
        self.head = nn.Linear(2, 2)


def test_references_to_registered_tensors_and_empty_modules_are_not_flagged() -> None:
    assert _flagged(KernelTable()) == []


def test_real_unregistered_tensors_and_modules_are_still_flagged() -> None:
    assert _flagged(RealBugs()) == [("", "weight2"), ("", "layers"), ("", "tensors")]
