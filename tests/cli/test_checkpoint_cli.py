"""Training checkpoints on the command line: notes, extras, optimizer state and ``--entry``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from paramscope.cli import main

# A real Lightning run: hyper-parameters saved by Lightning, Adam stepped by the Trainer. Beside
# the checkpoint, the optimizer's own per-parameter state by parameter name, to compare with.
LIGHTNING_RUN = """
import sys, torch, lightning as L
from torch import nn

class Lit(L.LightningModule):
    def __init__(self, width: int = 3, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, width), nn.BatchNorm1d(width), nn.Linear(width, 2))
    def training_step(self, batch, _):
        return self.net(batch[0]).pow(2).sum()
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

torch.manual_seed(0)
trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu")
lit = Lit()
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(12, 4)), batch_size=4)
trainer.fit(lit, data)
trainer.save_checkpoint(sys.argv[1])
opt = trainer.optimizers[0]
torch.save({f"{n}|{k}": v for n, p in lit.named_parameters() for k, v in opt.state[p].items() if v.dim() > 0},
           sys.argv[2])
"""

# What inspect --json had before checkpoints were described: none of these may change.
EXISTING_KEYS = {
    "modules", "parameters", "buffers", "tied_groups", "tied_group_kinds", "unregistered", "diagnostics",
    "total_params", "unique_params", "source",
}  # fmt: skip


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    pytest.importorskip("lightning")
    folder = tmp_path_factory.mktemp("lightning")
    ckpt, states = folder / "run.ckpt", folder / "states.pt"
    subprocess.run([sys.executable, "-c", LIGHTNING_RUN, str(ckpt), str(states)], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    return ckpt, torch.load(states, weights_only=True)


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["inspect", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_json_of_a_lightning_checkpoint(lightning_run, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, states = lightning_run
    data = _json(capsys, str(ckpt))
    assert set(data) >= EXISTING_KEYS | {"notes", "extras", "optimizers", "weight_entries"}
    assert all(isinstance(note, str) for note in data["notes"])
    assert "weights taken from the 'state_dict' entry" in data["notes"]
    extras = data["extras"]
    assert (extras["epoch"], extras["global_step"]) == (1, 3)
    assert extras["hyper_parameters"] == {"width": 3, "lr": 0.05}
    [optimizer] = data["optimizers"]
    assert (optimizer["kind"], optimizer["entry"], optimizer["lr"]) == ("Adam", "optimizer_states[0]", [0.05])
    assert optimizer["mapped_to_names"] and optimizer["step"] == 3
    rows = {f"{row['name']}|{row['key']}": row for row in optimizer["states"]}
    assert set(rows) == set(states)
    for key, tensor in states.items():
        row = rows[key]
        assert row["shape"] == list(tensor.shape)
        assert row["mean"] == pytest.approx(tensor.double().mean().item(), rel=1e-9, abs=1e-18)
        assert row["norm"] == pytest.approx(tensor.double().norm().item(), rel=1e-9, abs=1e-18)
        assert (row["min"], row["max"]) == pytest.approx((tensor.min().item(), tensor.max().item()))


def test_inspect_text_of_a_lightning_checkpoint(lightning_run, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = lightning_run
    assert main(["inspect", str(ckpt)]) == 0
    out = capsys.readouterr().out
    notes, checkpoint, optimizer = out.index("\nNotes\n"), out.index("\nCheckpoint\n"), out.index("\nOptimizer (")
    assert notes < checkpoint < optimizer
    assert "  global_step: 3" in out and "  hyper_parameters:\n    width: 3\n    lr: 0.05" in out
    assert "Optimizer (optimizer_states[0]): Adam, 6 parameter states, step 3" in out
    table = out[optimizer + 1 :].splitlines()
    assert table[2].split() == ["parameter", "state", "shape", "mean", "std", "min", "max", "norm"]
    assert table[3].split()[:4] == ["net.0.weight", "exp_avg", "[3,", "4]"]


def _two_weight_sets(tmp_path: Path) -> tuple[Path, nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    ema = {k: v * 0.5 for k, v in model.state_dict().items()}
    path = tmp_path / "ck.pt"
    torch.save({"epoch": 2, "model": model.state_dict(), "ema": ema}, path)
    return path, model, ema


def test_entry_on_inspect_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, model, ema = _two_weight_sets(tmp_path)
    default = _json(capsys, str(path))
    assert default["weight_entries"] == ["model", "ema"]
    assert "also holds weights in 'ema' (open one with --entry ema)" in default["notes"]
    chosen = _json(capsys, str(path), "--entry", "ema")
    by_name = {p["name"]: p for p in chosen["parameters"]}
    assert by_name["0.weight"]["stats"]["mean"] == pytest.approx(ema["0.weight"].double().mean().item())
    out = tmp_path / "ema.safetensors"
    assert main(["export", str(path), "--entry", "ema", "-o", str(out)]) == 0
    from safetensors.torch import load_file

    written = load_file(str(out))
    assert all(torch.equal(written[k], v) for k, v in ema.items())


def test_weights_entry_and_diff_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, model, ema = _two_weight_sets(tmp_path)
    factory = tmp_path / "net.py"
    factory.write_text("from torch import nn\ndef net():\n    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))\n")
    data = _json(capsys, f"{factory}:net", "--weights", str(path), "--weights-entry", "ema")
    by_name = {p["name"]: p for p in data["parameters"]}
    assert by_name["2.bias"]["stats"]["mean"] == pytest.approx(ema["2.bias"].item())
    assert data["extras"]["epoch"] == 2
    assert main(["diff", str(path), str(path), "--entry-b", "ema", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] == 4


@pytest.mark.parametrize("command", ["inspect", "export", "grad", "init"])
def test_a_bad_entry_is_one_line_naming_the_entries(tmp_path: Path, command: str) -> None:
    path, _, _ = _two_weight_sets(tmp_path)
    extra = {"export": ["-o", str(tmp_path / "x.pt")], "init": ["--rule", "*=zeros", "-o", str(tmp_path / "y.pt")]}
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", command, str(path), "--entry", "emma", *extra.get(command, [])],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == f"paramscope: {path}: has no weight entry 'emma'; entries holding weights: model, ema\n"


def test_a_bare_optimizer_state_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "optim.pt"
    torch.save(optimizer.state_dict(), path)
    for args in (["inspect", str(path)], ["export", str(path), "-o", str(tmp_path / "o.pt")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "is an optimizer state (2 parameter states, SGD-like: momentum_buffer), not model weights" in err


def test_the_window_command_takes_entry_and_strip_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    from paramscope.gui.app import launch

    seen = {}
    monkeypatch.setattr(launch, "launch", lambda source, **kwargs: seen.update(kwargs, source=source) or 0)
    assert main(["ck.pt", "--weights", "w.pt", "--strip-prefix", "auto", "--entry", "ema", "--weights-entry", "model"]) == 0
    assert seen["source"] == "ck.pt" and seen["weights"] == "w.pt"
    assert seen["options"] == {"strip_prefix": "auto", "entry": "ema", "weights_entry": "model"}
