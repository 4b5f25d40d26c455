"""A mixture of experts stacked in one 3-D tensor: each expert's matrix, in either layout."""

from __future__ import annotations

import json

import pytest
import torch
from small_models import StackedExperts, tiny_mixtral
from torch import nn

from paramscope.cli import main
from paramscope.core.model.experts import expert_matrices, experts_layout_of
from paramscope.core.model.heatmap import heatmap_of


@pytest.mark.parametrize("is_transposed", [False, True])
def test_the_heatmap_draws_each_experts_matrix_one_under_another(is_transposed: bool) -> None:
    """Read as a conv weight, (3, 6, 4) was drawn as 3 rows of 24 values."""
    torch.manual_seed(0)
    model = nn.Sequential(StackedExperts(is_transposed))
    tensor = model[0].up
    layout = experts_layout_of(model, "0.up", tensor)
    assert layout is is_transposed and experts_layout_of(model, "0.up", torch.zeros(2, 2)) is None
    heatmap = heatmap_of("0.up", tensor.detach(), experts=layout)
    assert heatmap.shape == (18, 4) and heatmap.experts == 3
    matrices = [(w.T if is_transposed else w) for w in tensor.detach()]  # each as F.linear takes it: 6 x 4
    assert torch.equal(torch.from_numpy(heatmap.array), torch.cat(matrices).double())
    assert "(3 experts, one under another)" in heatmap.title


def test_inspect_spectra_lists_each_expert(tmp_path, capsys) -> None:
    """Read as one matrix, a (2, 16, 32) down_proj was a 2 x 512 "weight" with two singular values."""
    torch.manual_seed(0)
    model = tiny_mixtral()
    model.save_pretrained(str(tmp_path))
    assert main(["inspect", str(tmp_path), "--spectra", "--json"]) == 0
    spectra = {s["name"]: s for s in json.loads(capsys.readouterr().out)["spectra"]}
    stacked = model.model.layers[0].mlp.experts.down_proj.detach()
    for e in range(2):
        entry = spectra[f"model.layers.0.mlp.experts.down_proj[{e}]"]
        assert entry["matrix"] == [16, 32]
        expected = torch.linalg.svdvals(expert_matrices(stacked, False)[e].double())
        assert entry["singular_values"] == pytest.approx(expected.tolist(), rel=1e-12)
    assert "model.layers.0.mlp.experts.down_proj" not in spectra


def test_the_pooled_spectrum_gives_each_experts_numbers() -> None:
    """Block-diagonal reasoning: the pooled singular values are each expert's; the numbers a
    single matrix has are given per expert (checked against torch on each expert alone)."""
    from paramscope.core.model.spectra import SpectraRequest, run

    torch.manual_seed(0)
    stacked = torch.randn(3, 8, 5, dtype=torch.float64)
    stacked[1] *= 10  # one expert ten times larger: a pooled stable rank would mislead
    spectrum = run(SpectraRequest(["up"], lambda _n: stacked, experts_of=lambda _n: False)).spectra["up"]
    each = [torch.linalg.svdvals(w) for w in stacked]
    assert spectrum.experts == 3 and (spectrum.rows, spectrum.cols) == (8, 5) and spectrum.shape == (3, 8, 5)
    assert spectrum.singular_values.tolist() == pytest.approx(sorted(torch.cat(each).tolist(), reverse=True), rel=1e-12)
    assert spectrum.spectral_norm == pytest.approx(max(float(s[0]) for s in each), rel=1e-12)
    stable = [float((s**2).sum() / s[0] ** 2) for s in each]
    assert spectrum.stable_rank == pytest.approx(sum(stable) / 3, rel=1e-12)
    assert spectrum.condition_number == pytest.approx(max(float(s[0] / s[-1]) for s in each), rel=1e-12)
    assert spectrum.rank == 5 and spectrum.frobenius == pytest.approx(float(stacked.norm()), rel=1e-12)
    assert spectrum.to_dict()["experts"] == 3
    assert spectrum.marchenko_pastur.ratio == pytest.approx(5 / 8)  # one expert's 8 x 5 law
