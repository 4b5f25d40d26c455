"""Diff numbers against a direct float64 computation; keys on one side; mismatches; ties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from paramscope.core.files.export import export_model
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.diff import diff_sources, diff_state_dicts, diff_tensors


def test_numbers_match_a_direct_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 7, generator=gen)
    b = a + 0.01 * torch.randn(300, 7, generator=gen)
    d = diff_tensors("w", a, b, bins=16)
    a64, b64 = a.double().numpy().ravel(), b.double().numpy().ravel()
    delta = b64 - a64
    assert d.max_abs == pytest.approx(np.abs(delta).max(), rel=0, abs=0)
    assert d.rel_change == pytest.approx(np.linalg.norm(delta) / np.linalg.norm(a64), rel=1e-12)
    assert d.cosine == pytest.approx(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)), rel=1e-12)
    counts, edges = np.histogram(delta, bins=16)
    assert d.histogram.counts.tolist() == counts.tolist()
    assert np.allclose(d.histogram.edges, edges)


def test_float64_accumulation_of_low_precision_tensors() -> None:
    a = torch.full((1000,), 1.0, dtype=torch.bfloat16)
    b = a.clone()
    b[0] = 1.0078125  # the next bfloat16 after 1.0
    d = diff_tensors("w", a, b, bins=4)
    assert d.max_abs == 0.0078125
    assert d.rel_change == pytest.approx(0.0078125 / math.sqrt(1000), rel=1e-12)


def test_zero_reference_and_integers() -> None:
    d = diff_tensors("z", torch.zeros(3), torch.ones(3))
    assert d.rel_change == math.inf and d.cosine is None
    same = diff_tensors("i", torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]))
    assert same.identical and same.rel_change == 0.0 and same.cosine == pytest.approx(1.0)


def test_state_dict_diff_lists_sides_and_mismatches() -> None:
    a = {"w": torch.ones(2), "only_a": torch.ones(1), "shape": torch.ones(2, 2), "kind": torch.ones(2)}
    b = {"w": torch.ones(2) * 2, "only_b": torch.ones(1), "shape": torch.ones(3), "kind": torch.ones(2, dtype=torch.int64)}
    result = diff_state_dicts(a, b)
    assert result.only_a == ["only_a"] and result.only_b == ["only_b"]
    assert [m.name for m in result.mismatched] == ["shape", "kind"]
    assert [t.name for t in result.changed] == ["w"]
    assert not result.identical


def test_tied_names_compared_once(tmp_path: Path) -> None:
    path = tmp_path / "lm.safetensors"
    export_model(build_demo("tiny_lm", seed=1), path)
    result = diff_sources("demo:tiny_lm", str(path))
    tied = [t for t in result.tensors if len(t.aliases) > 1]
    assert [t.aliases for t in tied] == [("embed.weight", "head.weight")]
    assert not result.only_a and not result.only_b
    assert len(result.changed) > 0


def test_model_against_its_own_export_is_identical(tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    export_model(build_demo("cnn"), path)
    assert diff_sources("demo:cnn", str(path)).identical
