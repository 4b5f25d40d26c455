"""The model-wide statistics pass: how many bars each tensor gets, and names through aliases."""

from __future__ import annotations

import torch
from torch import nn

from paramscope.core.model.model_statistics import auto_bins, compute_model_statistics, summarize
from paramscope.core.model.report import build_report
from paramscope.core.sources.demos import build_demo


def test_auto_bins_is_about_the_square_root_within_8_and_64() -> None:
    assert [auto_bins(n) for n in (0, 1, 12, 63, 64, 100, 1000, 4096, 10**6)] == [
        8, 8, 8, 8, 8, 10, 32, 64, 64,
    ]  # fmt: skip


def test_integers_spanning_few_values_get_one_bar_per_value() -> None:
    summary = summarize(torch.tensor([3, 5, 5, 9], dtype=torch.int64))
    assert summary.histogram.counts.tolist() == [1, 0, 2, 0, 0, 0, 1]
    assert summary.histogram.edges[0] == 2.5 and summary.histogram.edges[-1] == 9.5


def test_a_tied_name_is_summarized_under_its_canonical_name() -> None:
    model = build_demo("shared")
    report = build_report(model)
    results = compute_model_statistics(model, report, names=["1.weight"])
    assert list(results) == ["0.weight"]
    assert results["0.weight"].stats.mean == float(model[0].weight.detach().double().mean())


def test_tiny_tensors_are_batched_a_few_thousand_at_a_time() -> None:
    """``torch.cat`` of a batch holds the GIL throughout, and the window waits for it: a batch
    of every tiny tensor of a checkpoint held it 0.2 s. Same numbers as one at a time."""
    from paramscope.core.model.model_statistics import BATCH_TENSORS, _batches, summarize

    tensors = {f"t{i}": torch.full((2,), float(i)) for i in range(2 * BATCH_TENSORS + 5)}
    batches = list(_batches(list(tensors), tensors))
    assert [len(b) for b in batches] == [BATCH_TENSORS, BATCH_TENSORS, 5]
    model = nn.Module()
    for name, tensor in tensors.items():
        model.register_buffer(name, tensor)
    report = build_report(model)
    summaries = compute_model_statistics(model, report)
    for name in ("t0", f"t{BATCH_TENSORS}", f"t{2 * BATCH_TENSORS + 4}"):
        assert summaries[name].stats == summarize(tensors[name]).stats
