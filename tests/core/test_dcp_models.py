"""A real model saved with torch.distributed.checkpoint: paramscope shows what torch holds.

Same-shape layers (an attention block's projections) and a BatchNorm whose four vectors share one
shape: every key listed, none tied, counts and statistics equal to torch's own state_dict, and the
folder usable with ``diff`` and ``--weights``. Damaged data files fail in one line.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from paramscope.core.edit.session import Session
from paramscope.core.sources.diff import diff_sources
from paramscope.core.sources.sources import open_source
from paramscope.core.sources.weights import read_weights

APP = str(Path(__file__).resolve().parents[2] / "app")

MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(16, 16, bias=False)
            self.k_proj = nn.Linear(16, 16, bias=False)
            self.v_proj = nn.Linear(16, 16, bias=False)
            self.o_proj = nn.Linear(16, 16, bias=False)
            self.norm = nn.BatchNorm1d(16)

        def forward(self, x):
            return self.norm(self.o_proj(self.q_proj(x) + self.k_proj(x) + self.v_proj(x)))

    def make():
        return Block()
    """
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], Path]:
    """(DCP folder, the state_dict torch saved, the model's source file)."""
    root = tmp_path_factory.mktemp("dcp_model")
    source = root / "block.py"
    source.write_text(MODEL)
    namespace: dict = {}
    exec(compile(MODEL, str(source), "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["make"]()
    with torch.no_grad():  # four same-shape BatchNorm vectors, each with its own values
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.normal_()
        model.norm.running_mean.normal_()
        model.norm.running_var.uniform_(0.1, 2.0)
        model.norm.num_batches_tracked.fill_(5)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    folder = root / "ckpt"
    dcp.save(model.state_dict(), checkpoint_id=str(folder), no_dist=True)
    return folder, state, source


def test_every_key_is_listed_with_no_invented_ties(saved: tuple[Path, dict, Path]) -> None:
    folder, state, _ = saved
    report = Session(open_source(str(folder))).report
    names = set(report.parameters) | set(report.buffers)
    assert names == set(state)
    assert report.tied_groups == []
    assert all(len(info.aliases) == 1 for info in [*report.parameters.values(), *report.buffers.values()])
    params = {k: v for k, v in state.items() if k in report.parameters}
    assert set(params) == {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "norm.weight", "norm.bias"}
    assert report.unique_params == sum(v.numel() for v in params.values()) == 4 * 256 + 2 * 16
    assert report.total_params == report.unique_params
    every = sum(info.numel for info in [*report.parameters.values(), *report.buffers.values()])
    assert every == sum(v.numel() for v in state.values())


def test_statistics_equal_torch_for_every_key(saved: tuple[Path, dict, Path]) -> None:
    folder, state, _ = saved
    session = Session(open_source(str(folder)))
    for name, tensor in state.items():
        stats = session.ensure_summary(name).stats
        values = tensor.to(torch.float64)
        assert stats.has_data, name
        assert stats.min == pytest.approx(values.min().item(), rel=1e-6, abs=1e-12), name
        assert stats.max == pytest.approx(values.max().item(), rel=1e-6, abs=1e-12), name
        assert stats.mean == pytest.approx(values.mean().item(), rel=1e-6, abs=1e-9), name
        expected_std = values.std().item() if values.numel() > 1 else 0.0
        assert stats.std == pytest.approx(expected_std, rel=1e-6, abs=1e-9), name


def test_inspect_json_has_statistics_read_through_the_loader(saved: tuple[Path, dict, Path]) -> None:
    import json

    folder, state, _ = saved
    proc = subprocess.run(
        [sys.executable, "-m", "paramscope", "inspect", str(folder), "--json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": APP},
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {p["name"]: p for p in data["parameters"]}
    assert rows["o_proj.weight"]["stats"]["max"] == pytest.approx(state["o_proj.weight"].max().item())
    assert data["tied_groups"] == []


def test_diff_and_weights_accept_the_folder(saved: tuple[Path, dict, Path], tmp_path: Path) -> None:
    folder, state, source = saved
    read = read_weights(folder)
    assert set(read) == set(state)
    assert all(torch.equal(read[k], state[k]) for k in state)
    plain = tmp_path / "plain.pt"
    torch.save(state, plain)
    assert diff_sources(str(folder), str(plain), bins=0).identical
    changed = dict(state)
    changed["k_proj.weight"] = state["k_proj.weight"] + 1
    torch.save(changed, plain)
    result = diff_sources(str(plain), str(folder), bins=0)
    assert [t.name for t in result.changed] == ["k_proj.weight"]

    opened = open_source(f"{source}:make", weights=str(folder))
    loaded = opened.model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def _damaged(folder: Path, tmp_path: Path, how: str) -> Path:
    import shutil

    copy = tmp_path / how
    shutil.copytree(folder, copy)
    data = copy / "__0_0.distcp"
    raw = bytearray(data.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    else:  # flip bytes at the start of one tensor's record (its zip header)
        meta = pickle.loads((copy / ".metadata").read_bytes())
        info = next(v for k, v in meta.storage_data.items() if k.fqn == "o_proj.weight")
        for i in range(info.offset, info.offset + 64):
            raw[i] ^= 0x5A
    data.write_bytes(bytes(raw))
    return copy


@pytest.mark.parametrize("how", ["truncated", "flipped"])
@pytest.mark.parametrize("command", ["inspect", "export"])
def test_damaged_data_file_is_one_line(saved: tuple[Path, dict, Path], tmp_path: Path, how: str, command: str) -> None:
    folder = _damaged(saved[0], tmp_path, how)
    args = [str(folder)] if command == "inspect" else [str(folder), "-o", str(tmp_path / "out.safetensors")]
    proc = subprocess.run(
        [sys.executable, "-m", "paramscope", command, *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": APP},
    )
    assert proc.returncode not in (0, -6), proc.stderr  # -6: SIGABRT
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "weights_only" not in proc.stderr
    assert str(folder) in lines[0] and "__0_0.distcp" in lines[0]
    assert not (tmp_path / "out.safetensors").exists()


def test_meta_placeholders_are_never_one_view() -> None:
    """Every meta storage has data_ptr 0: same-shape placeholders must not look like views of one."""
    from paramscope.core.files.statedict import Checkpoint, build_module

    placeholders = {name: torch.empty(4, 4, device="meta") for name in ("q.weight", "o.weight")}
    root, _ = build_module(Checkpoint(placeholders))
    assert len(list(root.parameters())) == 2


def test_bytes_flipped_anywhere_read_or_fail_in_one_line(saved: tuple[Path, dict, Path], tmp_path: Path) -> None:
    """A sweep over the data file: each read gives values or a SourceError, never torch's BaseException."""
    import shutil

    from paramscope.core.errors import SourceError

    folder = tmp_path / "ckpt"
    shutil.copytree(saved[0], folder)
    data = folder / "__0_0.distcp"
    original = data.read_bytes()
    for position in range(0, len(original), max(1, len(original) // 24)):
        raw = bytearray(original)
        raw[position : position + 8] = bytes(b ^ 0xFF for b in raw[position : position + 8])
        data.write_bytes(bytes(raw))
        opened = open_source(str(folder))
        for name in saved[1]:
            try:
                opened.loader(name)
            except SourceError as exc:
                assert "\n" not in str(exc) and "weights_only" not in str(exc)
