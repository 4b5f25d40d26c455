"""Dtypes of packed pairs or raw bits (float4_e2m1fn_x2, bits8, bits16), which torch opens but
cannot compute with: every command says so in one line or works on the bytes, never
"unexpected error: NotImplementedError: copy_ not implemented for 'Float4_e2m1fn_x2'"."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from paramscope.core.edit.session import Session
from paramscope.core.edit.value_edits import ValueEditError, value_edit_command
from paramscope.core.files.export import ExportError, export_model
from paramscope.core.init.rules import apply_rules
from paramscope.core.model.heatmap import heatmap_of
from paramscope.core.model.spectra import spectra_of
from paramscope.core.sources.diff import diff_state_dicts
from paramscope.core.sources.sources import open_source

PACKED = "float4_e2m1fn_x2 holds packed or raw bits torch cannot compute with"


def _packed(start: int = 0) -> torch.Tensor:
    return torch.arange(start, start + 16, dtype=torch.uint8).view(torch.float4_e2m1fn_x2).reshape(4, 4)


def test_a_diff_compares_packed_tensors_by_their_bytes() -> None:
    a = {"fp4": _packed(), "bits": torch.arange(8, dtype=torch.uint8).view(torch.bits8), "w": torch.ones(2)}
    b = {"fp4": _packed(), "bits": a["bits"].clone(), "w": torch.ones(2)}
    assert diff_state_dicts(a, b).identical
    b["fp4"] = _packed(1)
    changed = diff_state_dicts(a, b).changed
    assert [t.name for t in changed] == ["fp4"]


def test_inits_edits_and_views_refuse_them_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fp4.pt"
    torch.save({"fp4": _packed(), "w": torch.ones(4, 4)}, path)
    session = Session(open_source(str(path)))
    apply_rules(session, ["*=normal_(std=0.1)"], seed=0, skip_refused=True)  # w only
    assert not torch.equal(session.tensor("w"), torch.ones(4, 4))
    with pytest.raises(Exception, match=f"refused for fp4: {PACKED}"):
        apply_rules(session, ["fp4=zeros_"], seed=0)
    with pytest.raises(ValueEditError, match=f"add: fp4: {PACKED}"):
        value_edit_command(session, ["fp4"], "add", 1.0)
    assert heatmap_of("fp4", _packed()).message == f"fp4: {PACKED}."
    assert spectra_of({"fp4": _packed()}).skipped == {"fp4": PACKED}


def test_safetensors_export_writes_the_rare_types_it_has_and_names_those_it_lacks(tmp_path: Path) -> None:
    rare = torch.nn.Module()
    rare.register_buffer("fp4", _packed())
    rare.register_buffer("e8m0", torch.arange(16, dtype=torch.uint8).view(torch.float8_e8m0fnu))
    export_model(rare, tmp_path / "rare.safetensors")
    written = safetensors.torch.load_file(str(tmp_path / "rare.safetensors"))
    assert torch.equal(written["fp4"].view(torch.uint8), rare.fp4.view(torch.uint8))
    rare.register_buffer("raw", torch.arange(4, dtype=torch.uint8).view(torch.bits8))
    with pytest.raises(ExportError, match=r"the safetensors format has no bits8 type \(raw\): export to .pt instead$"):
        export_model(rare, tmp_path / "raw.safetensors")


def test_a_series_over_packed_tensors_lists_them_without_numbers(tmp_path: Path) -> None:
    """"unexpected error: NotImplementedError: copy_ not implemented for 'Bits16'"."""
    from paramscope.core.runs.series import compute_series

    for step in (1, 2):
        bits = torch.arange(8, dtype=torch.int16).view(torch.bits16)
        torch.save({"fp4": _packed(step), "bits": bits, "w": torch.full((2,), float(step))}, tmp_path / f"step-{step}.pt")
    rows = {r.name: r for r in compute_series([str(tmp_path)]).tensors}
    assert rows["fp4"].points[1].rel_prev is None and rows["bits"].points[1].norm is None
    assert rows["w"].points[1].rel_prev == pytest.approx(1.0)  # [1, 1] to [2, 2]
