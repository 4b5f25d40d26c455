"""Weights saved through a wrapper load into the bare model with one option (--strip-prefix)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from paramscope.core.errors import ParamscopeError
from paramscope.core.files.key_match import KeyMapping, suggest_mapping
from paramscope.core.sources.sources import open_source

NET_PY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(self.fc(x))

def peft_net():
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    return get_peft_model(Net(), LoraConfig(target_modules=["fc"], r=2, init_lora_weights=False))
"""


@pytest.fixture
def net_py(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keymatch_net.py"
    path.write_text(NET_PY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return path


def _wrapped_state(kind: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    import keymatch_net as net  # the fixture put it on the path

    model = net.Net()
    wrapper = {"ddp": nn.DataParallel, "compile": torch.compile}[kind](model)
    return dict(wrapper.state_dict()), dict(model.state_dict())


@pytest.mark.parametrize(("kind", "prefix"), [("ddp", "module."), ("compile", "_orig_mod.")])
def test_a_wrappers_prefix_is_named_then_stripped(tmp_path: Path, net_py: Path, kind: str, prefix: str) -> None:
    saved, bare = _wrapped_state(kind)
    assert all(k.startswith(prefix) for k in saved)
    path = tmp_path / f"{kind}.pt"
    torch.save(saved, path)
    with pytest.raises(ParamscopeError, match=f"keys match after stripping '{prefix}' \\(--strip-prefix {prefix}\\)"):
        open_source(f"{net_py}:Net", weights=str(path))
    for option in ("auto", prefix):
        opened = open_source(f"{net_py}:Net", weights=str(path), strip_prefix=option)
        for name, value in bare.items():
            assert torch.equal(opened.model.state_dict()[name], value)


def test_auto_with_nothing_to_change_says_so(tmp_path: Path, net_py: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"unrelated.weight": torch.ones(2)}, path)
    with pytest.raises(ParamscopeError, match="no prefix or adapter name makes more of its keys match"):
        open_source(f"{net_py}:Net", weights=str(path), strip_prefix="auto")


def test_a_peft_adapter_loads_into_its_peft_model(tmp_path: Path, net_py: Path) -> None:
    pytest.importorskip("peft")
    import keymatch_net as net

    torch.manual_seed(1)
    trained = net.peft_net()
    with torch.no_grad():
        for name, param in trained.named_parameters():
            if "lora_" in name:
                param.normal_()
    trained.save_pretrained(str(tmp_path / "adapter"))
    adapter = tmp_path / "adapter" / "adapter_model.safetensors"
    stored = load_file(str(adapter))
    assert "base_model.model.fc.lora_A.weight" in stored  # PEFT stores it without the adapter name

    opened = open_source(f"{net_py}:peft_net", weights=str(adapter), strip_prefix="auto")
    state = opened.model.state_dict()
    for key, value in stored.items():
        assert torch.equal(state[key.replace("lora_A.", "lora_A.default.").replace("lora_B.", "lora_B.default.")], value)
    fresh = net.peft_net().state_dict()
    assert torch.equal(state["base_model.model.out.weight"], fresh["base_model.model.out.weight"])


def test_the_suggestion_prefers_what_matches_most() -> None:
    model = {"fc.weight", "fc.bias", "out.weight"}
    assert suggest_mapping(model, ["model.fc.weight", "model.fc.bias", "model.out.weight"]) == KeyMapping(strip="model.")
    assert suggest_mapping({"model.fc.weight"}, ["fc.weight"]) == KeyMapping(add="model.")
    assert suggest_mapping(model, sorted(model)) is None
    # a prefix that only some keys carry is stripped where present
    assert KeyMapping(strip="module.").apply("fc.weight") == "fc.weight"
