"""Checkpoints whose hyper-parameters hold the training script's own classes (Lightning style).

Their weights open without running any of that code: each unknown class is an inert stand-in
shown by name. A whole pickled module still needs trust.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from paramscope.core.files import UntrustedFileError
from paramscope.core.sources.sources import open_source

# A training script: a config dataclass whose every hook leaves a marker file if it ever runs.
TRAIN_PY = '''
import dataclasses, enum, pathlib

MARK = pathlib.Path(__file__).with_name("ran")

def _ran(what):
    MARK.write_text(what)

class Stage(enum.Enum):
    FIT = "fit"

@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    data: pathlib.Path = pathlib.Path("/data/train")
    stage: Stage = Stage.FIT

    def __post_init__(self):
        _ran("init")

    def __setstate__(self, state):
        _ran("setstate")
        self.__dict__.update(state)

class Loud:
    def __reduce__(self):
        return (_ran, ("reduce",))

class Net(__import__("torch").nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = __import__("torch").nn.Linear(4, 2)
'''


def _write_checkpoint(tmp_path: Path, what: str) -> Path:
    """Save a checkpoint from a separate process that can import the script, as training does."""
    (tmp_path / "train.py").write_text(TRAIN_PY)
    out = tmp_path / f"{what}.ckpt"
    code = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(tmp_path)!r})
        import train
        torch.manual_seed(0)
        net = train.Net()
        if {what!r} == "whole":
            torch.save(net, {str(out)!r})
        else:
            cfg = train.Cfg()
            train.MARK.unlink(missing_ok=True)
            torch.save({{
                "epoch": 3, "global_step": 120,
                "state_dict": {{f"model.{{k}}": v for k, v in net.state_dict().items()}},
                "hyper_parameters": {{"cfg": cfg, "loud": train.Loud(), "name": "run-1"}},
            }}, {str(out)!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    (tmp_path / "ran").unlink(missing_ok=True)
    return out


def test_weights_open_and_no_code_of_the_script_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_checkpoint(tmp_path, "lightning")
    monkeypatch.syspath_prepend(str(tmp_path))  # even where the script could be imported
    opened = open_source(str(path))
    assert not (tmp_path / "ran").exists(), (tmp_path / "ran").read_text()
    assert "train" not in sys.modules
    torch.manual_seed(0)
    expected = nn.Linear(4, 2)
    assert torch.equal(opened.model.get_parameter("model.fc.weight").detach(), expected.weight.detach())
    hyper = opened.extras["hyper_parameters"]
    assert hyper["cfg"] == "train.Cfg (not loaded: its code is never run)"
    assert hyper["loud"].startswith("train._ran (not loaded")
    assert hyper["name"] == "run-1"
    assert opened.extras["epoch"] == 3
    assert any("train.Cfg" in note and "none of their code ran" in note for note in opened.notes)


def test_inspect_json_shows_the_stand_ins(tmp_path: Path) -> None:
    path = _write_checkpoint(tmp_path, "lightning")
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "inspect", str(path), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total_params"] == 10
    assert not (tmp_path / "ran").exists()


def test_a_whole_pickled_module_still_needs_trust(tmp_path: Path) -> None:
    path = _write_checkpoint(tmp_path, "whole")
    with pytest.raises(UntrustedFileError):
        open_source(str(path))
    assert not (tmp_path / "ran").exists()


LIGHTNING_RUN = """
import dataclasses, pathlib, sys, torch, lightning as L
from torch import nn

@dataclasses.dataclass
class Cfg:
    lr: float = 0.1
    root: pathlib.Path = pathlib.Path("/data")

class Lit(L.LightningModule):
    def __init__(self, cfg: Cfg):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(4, 2)
    def training_step(self, batch, _):
        return self.net(batch[0]).sum()
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.1)

trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, accelerator="cpu")
lit = Lit(Cfg())
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 4)), batch_size=4)
trainer.fit(lit, data)
trainer.save_checkpoint(sys.argv[1])
torch.save(lit.net.state_dict(), sys.argv[2])
"""


def test_a_real_lightning_checkpoint_with_a_dataclass_config(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    ckpt, plain = tmp_path / "run.ckpt", tmp_path / "net.pt"
    subprocess.run([sys.executable, "-c", LIGHTNING_RUN, str(ckpt), str(plain)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    opened = open_source(str(ckpt))
    expected = torch.load(plain, weights_only=True)
    for name, value in expected.items():
        assert torch.equal(opened.model.get_parameter(f"net.{name}").detach(), value)
    assert opened.extras["hyper_parameters"]["cfg"] == "__main__.Cfg (not loaded: its code is never run)"
    assert opened.extras["global_step"] == 2
