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


@pytest.mark.parametrize("magnitude", [1e200, 1e-200])
def test_values_whose_squares_leave_float64_give_exact_norms_change_and_cosine(magnitude: float) -> None:
    """The norms of [3e200, 3e200, 3e200, -3e200] came out inf, the change NaN and no cosine; those
    of [3e-200, ...] 0, the change inf ("A is zero") and no cosine."""
    a = torch.tensor([3.0, 3.0, 3.0, -3.0], dtype=torch.float64) * magnitude
    b = torch.tensor([3.0, 3.0, -3.0, -3.0], dtype=torch.float64) * magnitude
    for d in (diff_tensors("w", a, b), diff_state_dicts({"w": a}, {"w": b}).tensors[0]):
        six = pytest.approx(6 * magnitude, rel=1e-15)
        assert (d.norm_a, d.norm_b, d.max_abs) == (six, six, six)
        assert (d.rel_change, d.cosine) == (pytest.approx(1.0, rel=1e-15), pytest.approx(0.5, rel=1e-15))
    ends = diff_tensors("w", torch.tensor([-1e308, 1e308], dtype=torch.float64), torch.tensor([-1e308, 1e308], dtype=torch.float64))
    assert (ends.norm_a, ends.rel_change, ends.cosine) == (pytest.approx(math.sqrt(2) * 1e308, rel=1e-15), 0.0, pytest.approx(1.0))


def test_nan_on_both_sides_and_the_same_inf_are_no_change() -> None:
    """A checkpoint with NaN or Inf diffed against its own copy listed them as changed (NaN - NaN
    and inf - inf are NaN); a NaN against a number, or +Inf against -Inf, still differs."""
    a = torch.tensor([1.0, math.nan, math.inf, -math.inf])
    same = diff_state_dicts({"w": a}, {"w": a.clone()})
    assert same.identical and same.tensors[0].max_abs == 0.0 and same.tensors[0].histogram.counts.sum() == 4
    for other in ([1.0, 2.0, math.inf, -math.inf], [1.0, math.nan, -math.inf, -math.inf]):
        assert not diff_tensors("w", a, torch.tensor(other)).identical


def test_a_name_only_on_one_side_but_tied_there_to_a_common_one_says_so() -> None:
    """Tied embeddings: transformers writes embed only, an export also head (one tensor); the diff
    listed head as "only in" with nothing to tell it from a tensor of its own."""
    from paramscope.cli.diff_cmd import format_text

    embed = torch.randn(4, 3)
    result = diff_state_dicts({"embed": embed.clone(), "other": torch.ones(2)}, {"embed": embed, "head": embed, "extra": torch.ones(2)})
    assert result.only_b == ["head", "extra"] and result.tied_only == {"head": "embed"}
    text = format_text("a.pt", "b.pt", result.to_dict(with_histogram=False))
    assert "only in b.pt: head (tied there to embed), extra" in text and "only in a.pt: other" in text


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


def test_the_same_values_in_another_dtype_are_not_identical_files(tmp_path: Path, capsys) -> None:
    """A bfloat16 checkpoint against its float32 export: every value equal, twice the bytes. The
    diff said "20 identical" (and "identical": true in the JSON)."""
    from paramscope.cli import main

    a = {"w": torch.randn(3, 4).to(torch.bfloat16), "b": torch.zeros(3, dtype=torch.bfloat16)}
    b = {"w": a["w"].float(), "b": a["b"].clone()}
    result = diff_state_dicts(a, b)
    assert not result.changed and [t.name for t in result.recast] == ["w"] and not result.identical
    assert result.to_dict()["recast"] == ["w"]
    torch.save(a, tmp_path / "a.pt")
    torch.save(b, tmp_path / "b.pt")
    assert main(["diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 0
    text = capsys.readouterr().out
    assert "0 tensor(s) differ, 1 identical" in text
    assert f"1 tensor(s) hold the same values in another dtype, e.g. w: bfloat16 in {tmp_path / 'a.pt'}, float32 in {tmp_path / 'b.pt'}" in text
    assert diff_state_dicts(a, {k: v.clone() for k, v in a.items()}).identical


def _pairs() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Small tensors of every kind the batched diff takes, and some it leaves to the single one."""
    gen = torch.Generator().manual_seed(3)
    a: dict[str, torch.Tensor] = {}
    b: dict[str, torch.Tensor] = {}
    for i in range(300):
        shape = [(3, 2), (5,), (1,), (7, 3)][i % 4]
        dtype = [torch.float32, torch.float64, torch.float16, torch.bfloat16][i % 4]
        a[f"w{i}"] = torch.randn(shape, generator=gen).to(dtype)
        b[f"w{i}"] = (a[f"w{i}"].double() + (i % 3) * 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)
    a["same"], b["same"] = torch.ones(4), torch.ones(4)  # Δ = 0: a widened zero-width range
    a["shifted"], b["shifted"] = torch.zeros(3), torch.full((3,), 2.0)  # zero reference: rel inf, no cosine
    a["mixed"], b["mixed"] = torch.randn(6, generator=gen), torch.randn(6, generator=gen, dtype=torch.float64)
    a["nan"], b["nan"] = torch.tensor([1.0, 2.0]), torch.tensor([math.nan, 2.0])
    a["huge"], b["huge"] = torch.tensor([-1e308, 0.0], dtype=torch.float64), torch.tensor([1e308, 0.0], dtype=torch.float64)
    a["ints"], b["ints"] = torch.arange(4), torch.arange(4) + 1
    # squares past float64's range: the batch's sums overflow, the single diff scales
    a["squares"] = torch.tensor([3e200, 3e200, 3e200, -3e200], dtype=torch.float64)
    b["squares"] = torch.tensor([3e200, 3e200, -3e200, -3e200], dtype=torch.float64)
    a["tiny"], b["tiny"] = a["squares"] * 1e-200 * 1e-200, b["squares"] * 1e-200 * 1e-200  # squares vanish
    # Δ a constant 1e30: widened by 0.5 it is still one value, bars of no width
    a["wide"], b["wide"] = torch.full((2,), 1e30, dtype=torch.float64), torch.full((2,), 2e30, dtype=torch.float64)
    a["empty"], b["empty"] = torch.zeros(0), torch.zeros(0)
    a["large"], b["large"] = torch.randn(5000, generator=gen), torch.randn(5000, generator=gen)
    shared_a, shared_b = torch.randn(3, generator=gen), torch.randn(3, generator=gen)  # one tensor, two names
    a["tied"], a["tied_too"], b["tied"], b["tied_too"] = shared_a, shared_a, shared_b, shared_b
    return a, b


def test_small_tensors_diffed_together_give_the_single_tensor_numbers() -> None:
    a, b = _pairs()
    result = diff_state_dicts(a, b, bins=8)
    by_name = {t.name: t for t in result.tensors}
    assert list(by_name) == [n for n in a if n != "tied_too"] and by_name["tied"].aliases == ("tied", "tied_too")
    for name, got in by_name.items():
        want = diff_tensors(name, a[name], b[name], bins=8)
        assert (got.shape, got.dtype_a, got.dtype_b, repr(got.max_abs)) == (want.shape, want.dtype_a, want.dtype_b, repr(want.max_abs)), name
        for field in ("rel_change", "norm_a", "norm_b", "cosine"):
            assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-12, nan_ok=True), (name, field)
        assert got.histogram.counts.tolist() == want.histogram.counts.tolist(), name
        assert got.histogram.edges.tolist() == want.histogram.edges.tolist(), name
        assert (got.histogram.nan, got.histogram.posinf) == (want.histogram.nan, want.histogram.posinf), name
    assert by_name["shifted"].rel_change == math.inf and by_name["shifted"].cosine is None
    assert by_name["same"].identical and math.isnan(by_name["nan"].max_abs)


def test_small_tensors_are_diffed_many_at_a_time(monkeypatch) -> None:
    """~10 torch calls and a histogram pass per tensor took 30 s for 100,000 tiny ones; only
    what the batch cannot take (NaN, past float64's range, integers, empty, large) goes alone."""
    import paramscope.core.sources.diff as diff_module

    alone: list[str] = []
    real = diff_module.diff_tensors
    monkeypatch.setattr(diff_module, "diff_tensors", lambda name, *args: (alone.append(name), real(name, *args))[1])
    a, b = _pairs()
    diff_state_dicts(a, b, bins=8)
    assert sorted(alone) == ["empty", "huge", "ints", "large", "nan", "squares", "tiny", "wide"]
