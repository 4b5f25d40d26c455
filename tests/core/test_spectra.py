"""Spectra: singular values and the numbers from them, against torch.linalg and random-matrix theory."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from paramscope.cli import main
from paramscope.core.errors import Cancelled
from paramscope.core.model.spectra import MarchenkoPastur, SpectraRequest, run, spectra_of, spectrum
from paramscope.core.tasks import TaskState


def test_numbers_agree_with_torch_linalg_for_a_conv_weight_flattened():
    weight = torch.nn.Conv2d(8, 16, 3).weight
    result = spectrum("w", weight)
    matrix = weight.detach().double().reshape(16, -1)
    assert (result.rows, result.cols) == (16, 72)
    assert result.spectral_norm == pytest.approx(float(torch.linalg.matrix_norm(matrix, 2)), rel=1e-12)
    fro = float(torch.linalg.matrix_norm(matrix))
    assert result.stable_rank == pytest.approx(fro**2 / result.spectral_norm**2, rel=1e-12)
    assert result.condition_number == pytest.approx(float(torch.linalg.cond(matrix)), rel=1e-9)
    assert result.rank == int(torch.linalg.matrix_rank(matrix))


def test_rank_one_matrix_has_stable_rank_one_and_infinite_condition():
    u = torch.arange(1.0, 5.0)
    result = spectrum("r1", torch.outer(u, u))
    assert result.stable_rank == pytest.approx(1.0) and result.rank == 1
    assert result.condition_number > 1e12


def test_marchenko_pastur_density_matches_a_gaussian_matrix():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(400, 1000, generator=generator, dtype=torch.float64) * 0.1
    result = spectrum("g", weight)
    law = result.marchenko_pastur
    assert law.sigma == pytest.approx(0.1, rel=0.01)
    assert law.low == pytest.approx(0.1 * (math.sqrt(1000) - math.sqrt(400)), rel=0.01)
    values = result.singular_values
    assert values.min() > law.low * 0.97 and values.max() < law.high * 1.03 and result.outliers() == 0
    x = np.linspace(law.low, law.high, 20001)
    assert np.trapezoid(law.pdf(x), x) == pytest.approx(1.0, abs=2e-3)
    counts, edges = np.histogram(values, bins=20)
    _, expected = law.curve(edges, len(values), points=20)  # values at the bin edges' grid
    centers = (edges[:-1] + edges[1:]) / 2
    expected_at_centers = law.pdf(centers) * len(values) * (edges[1] - edges[0])
    inner = expected_at_centers > 15
    assert np.allclose(counts[inner], expected_at_centers[inner], rtol=0.35)
    assert expected.shape == (20,)


def test_a_planted_direction_shows_as_an_outlier_above_the_edge():
    generator = torch.Generator().manual_seed(1)
    weight = torch.randn(200, 300, generator=generator, dtype=torch.float64)
    u, v = torch.randn(200, 1, generator=generator, dtype=torch.float64), torch.randn(1, 300, generator=generator, dtype=torch.float64)
    spiked = weight + 3 * u @ v / math.sqrt(200 * 300) * math.sqrt(200 + 300) * 2
    assert spectrum("s", spiked).outliers() >= 1


def test_mp_is_symmetric_in_the_aspect():
    wide, tall = MarchenkoPastur(0.5, 30, 90), MarchenkoPastur(0.5, 90, 30)
    s = np.linspace(0.1, 10, 50)
    assert np.allclose(wide.pdf(s), tall.pdf(s)) and wide.high == tall.high


def test_run_reports_progress_skips_with_reasons_and_cancels():
    tensors = {
        "a": torch.randn(5, 40),
        "bias": torch.randn(30),
        "ints": torch.ones(3, 3, dtype=torch.int64),
        "nan": torch.full((2, 2), float("nan")),
        "big": torch.randn(20, 20),
    }
    seen: list[float] = []
    result = run(SpectraRequest(list(tensors), tensors.__getitem__, max_side=10), TaskState(lambda f, _m: seen.append(f)))
    assert list(result.spectra) == ["a"]
    assert "not a matrix" in result.skipped["bias"] and "not floating-point" in result.skipped["ints"]
    assert "NaN" in result.skipped["nan"] and "above 10" in result.skipped["big"]
    assert seen == sorted(seen) and len(seen) == len(tensors) + 1 and seen[-1] == 1.0
    computed: list[str] = []
    state = TaskState(lambda _f, message: computed.append(message))

    def tensor_of(name: str) -> torch.Tensor:
        state.cancel()  # the user cancels while the first tensor is read
        return tensors[name]

    with pytest.raises(Cancelled):
        run(SpectraRequest(list(tensors), tensor_of, shape_of=lambda n: tuple(tensors[n].shape)), state)
    assert computed == ["a"]  # stopped before the second tensor
    assert spectra_of({"a": tensors["a"]}).spectra["a"].rows == 5


def test_inspect_spectra_json_adds_keys_and_keeps_the_others(capsys):
    assert main(["inspect", "demo:cnn", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["inspect", "demo:cnn", "--json", "--spectra"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) - set(plain) == {"spectra", "spectra_skipped"}
    assert data["parameters"] == plain["parameters"]
    names = [s["name"] for s in data["spectra"]]
    assert names == ["features.0.weight", "features.4.weight", "classifier.weight"]
    first = data["spectra"][0]
    assert first["matrix"] == [8, 27] and len(first["singular_values"]) == 8
    assert {"spectral_norm", "stable_rank", "condition_number", "marchenko_pastur"} <= set(first)
    assert main(["inspect", "demo:cnn", "--spectra"]) == 0
    assert "stable rank" in capsys.readouterr().out


@pytest.mark.parametrize("magnitude", [1e-200, 1e300])
def test_the_numbers_of_a_matrix_are_those_of_its_scaled_copy_past_1e154(magnitude: float):
    """Squares overflow past ~1.3e154: the Frobenius norm came out Inf, the stable rank raised
    OverflowError (a traceback on the Spectrum tab) and the law's sigma**2 too."""
    generator = torch.Generator().manual_seed(2)
    unit = torch.randn(30, 50, generator=generator, dtype=torch.float64)
    scaled, plain = spectrum("big", unit * magnitude), spectrum("unit", unit)
    assert scaled.frobenius == pytest.approx(plain.frobenius * magnitude, rel=1e-12)
    assert scaled.stable_rank == pytest.approx(plain.stable_rank, rel=1e-12)
    assert scaled.std == pytest.approx(plain.std * magnitude, rel=1e-12)
    law, unit_law = scaled.marchenko_pastur, plain.marchenko_pastur
    assert (law.low, law.high) == (pytest.approx(unit_law.low * magnitude), pytest.approx(unit_law.high * magnitude))
    x = np.linspace(unit_law.low, unit_law.high, 101)[1:-1]  # (at the edges rounding decides)
    np.testing.assert_allclose(law.pdf(x * magnitude) * magnitude, unit_law.pdf(x), rtol=1e-12)
    assert scaled.outliers() == plain.outliers()
    assert json.loads(json.dumps(scaled.to_dict()))["frobenius_norm"] == pytest.approx(plain.frobenius * magnitude)


def test_singular_values_past_float64_say_so():
    with pytest.raises(ValueError, match="past float64's range"):
        spectrum("w", torch.full((4, 4), 1.5e308, dtype=torch.float64))


def test_the_law_of_a_subnormal_matrix_draws_finite_counts():
    """Its density (~1/sigma, past float64's range for sigma ~1e-323) overflowed to Inf and
    numpy warned on stderr; the expected counts per bin are small numbers."""
    import warnings

    law = spectrum("w", torch.tensor([[5e-324, -1e-323], [0.0, 2e-323]], dtype=torch.float64)).marchenko_pastur
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, y = law.curve(np.linspace(0.0, 2 * law.high, 9), total=2)
    assert np.isfinite(y).all() and y.max() > 0
