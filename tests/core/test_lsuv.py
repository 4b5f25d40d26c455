"""LSUV (Mishkin & Matas 2016): data-dependent init through rules, undo, preview and replay."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from paramscope.cli import main
from paramscope.core.edit.replay import replay_script
from paramscope.core.edit.session import Session
from paramscope.core.errors import RuleError
from paramscope.core.init.initializers import get_initializer
from paramscope.core.init.lsuv import lsuv_
from paramscope.core.init.rule_parse import fill_input, parse_rule
from paramscope.core.init.rules import apply_rules, preview_rules
from paramscope.core.sources.demos import build_demo
from paramscope.core.sources.sources import open_source


def linear_output_stds(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Plain torch: the std of every Linear output in one forward."""
    stds: list[float] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: stds.append(float(out.std())))
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return stds


def test_issue_acceptance_deep_mlp_unit_std_on_a_fresh_input(tmp_path, capsys):
    out = tmp_path / "out.pt"
    code = main(["init", "demo:deep_mlp", "--rule", "*.weight=lsuv", "--input", "randn(256,64)", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    model = build_demo("deep_mlp")
    before = linear_output_stds(model, torch.randn(256, 64, generator=torch.Generator().manual_seed(99)))
    assert min(before) < 0.85  # the default init lets the signal shrink: the test can fail
    model.load_state_dict(torch.load(out, weights_only=True))
    stds = linear_output_stds(model, torch.randn(256, 64, generator=torch.Generator().manual_seed(12345)))
    assert len(stds) == 20
    assert all(0.85 <= s <= 1.15 for s in stds), stds


def test_lsuv_meets_tolerance_on_the_sample_and_keeps_biases():
    net = build_demo("deep_mlp")
    biases = {n: p.detach().clone() for n, p in net.named_parameters() if n.endswith("bias")}
    names = [n for n, _ in net.named_parameters() if n.endswith("weight")]
    result = lsuv_(net, names, "randn(128,64)", tol=0.02, generator=torch.Generator().manual_seed(0))
    assert len(result.layers) == 20 and not result.notes
    assert all(abs(layer.std_end - 1) <= 0.02 for layer in result.layers)
    assert any(layer.rescales > 0 for layer in result.layers)
    for name, value in biases.items():
        assert torch.equal(net.get_parameter(name), value)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_is_rescaled_in_its_dtype(dtype):
    """torch's QR has no bfloat16/float16 kernel on the CPU: the orthogonal start raised
    NotImplementedError ("geqrf_cpu") on every bfloat16 checkpoint."""
    net = build_demo("deep_mlp").to(dtype)
    names = [n for n, _ in net.named_parameters() if n.endswith("weight")]
    result = lsuv_(net, names, "randn(128,64)", tol=0.05, generator=torch.Generator().manual_seed(0))
    assert len(result.layers) == 20 and not result.notes
    assert all(abs(layer.std_end - 1) <= 0.05 for layer in result.layers)
    assert {p.dtype for p in net.parameters()} == {dtype}
    first = net.get_parameter(names[0]).float()
    assert torch.allclose(first @ first.T / (first @ first.T).diagonal().mean(), torch.eye(first.shape[0]), atol=0.05)


def test_the_cli_lsuv_preset_takes_the_models_sample_input(capsys, tmp_path):
    """The window's Presets dialog fills in the model's input; `init --preset lsuv` refused."""
    assert main(["init", "demo:tiny_lm", "--preset", "lsuv", "-o", str(tmp_path / "out.pt")]) == 0
    out = capsys.readouterr().out
    assert "# input: randint(64, 8, high=100) (the model's sample input; --input SPEC to choose one)" in out
    assert "lsuv(tol=0.05,input='randint(64, 8, high=100)')" in out
    assert main(["init", "demo:tiny_lm", "--preset", "lsuv", "--input", "randint(4, 8, high=100)", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# input:" not in out and "input='randint(4, 8, high=100)'" in out


def test_max_iter_bounds_the_passes_and_a_miss_is_noted():
    net = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
    names = ["0.weight"]
    result = lsuv_(net, names, "randn(64,16)", tol=1e-6, max_iter=1, generator=torch.Generator().manual_seed(0))
    assert result.layers[0].rescales == 1
    assert result.notes and "after 1 rescale(s)" in result.notes[0]


def test_layers_in_forward_order_not_name_order():
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.b = nn.Linear(8, 8)
            self.a = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.relu(self.a(x)))

    net = Backwards()
    result = lsuv_(net, ["b.weight", "a.weight"], "randn(64,8)", generator=torch.Generator().manual_seed(0))
    assert [layer.module for layer in result.layers] == ["a", "b"]
    with torch.no_grad():
        x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        stds = [float(net.a(x).std())]
    assert 0.7 < stds[0] < 1.3


def test_rule_needs_an_input_and_says_so_in_one_line():
    session = Session(open_source("demo:mlp"))
    with pytest.raises(RuleError, match="lsuv needs a sample input") as info:
        apply_rules(session, ["*.weight=lsuv"])
    assert "\n" not in str(info.value)
    filled = fill_input([parse_rule("*.weight=lsuv(tol=0.1)")], "rand(8,4)")[0]
    assert dict(filled.kwargs) == {"tol": 0.1, "input": "rand(8,4)"}
    assert fill_input(["*.weight=normal"], "rand(8,4)")[0].kwargs == ()


def test_rule_needs_the_models_code(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save(build_demo("mlp").state_dict(), path)
    session = Session(open_source(str(path)))
    assert session.opened.forward_unavailable
    with pytest.raises(RuleError, match="needs the model's code") as info:
        apply_rules(session, ["*.weight=lsuv(input='rand(8,4)')"])
    assert "\n" not in str(info.value)


def test_one_undoable_step_seed_reproducible_and_preview_identical():
    session = Session(open_source("demo:deep_mlp"))
    original = {n: t.detach().clone() for n, t in session.model.state_dict().items()}
    rule = "*.weight=lsuv(input='randn(64,64)')"
    _, preview = preview_rules(session, [rule], seed=5, skip_refused=True)
    assert all(torch.equal(session.model.state_dict()[n], t) for n, t in original.items())  # untouched
    commands = apply_rules(session, [rule], seed=5)
    assert len(commands) == 1 and "(seed 5)" in commands[0].text
    after = {n: t.detach().clone() for n, t in session.model.state_dict().items()}
    for name in ("0.weight", "38.weight"):
        assert torch.equal(preview[name], after[name])
    session.undo()
    assert all(torch.equal(session.model.state_dict()[n], t) for n, t in original.items())
    again = Session(open_source("demo:deep_mlp"))
    apply_rules(again, [rule], seed=5)
    assert all(torch.equal(again.model.state_dict()[n], t) for n, t in after.items())


def test_replay_script_repeats_lsuv_bit_for_bit(tmp_path):
    session = Session(open_source("demo:cnn"))
    apply_rules(session, ["*.weight=lsuv(input='randn(8,3,16,16)')"], seed=2, skip_refused=True)
    script = tmp_path / "replay.py"
    script.write_text(replay_script(session))
    out = tmp_path / "out.pt"
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    replayed = torch.load(out, weights_only=True)
    for name, tensor in session.model.state_dict().items():
        assert torch.equal(replayed[name], tensor), name


def test_cnn_buffers_are_restored_and_norm_weights_are_refused():
    session = Session(open_source("demo:cnn"))
    running = session.model.features[1].running_mean.clone()
    commands = apply_rules(session, ["*.weight=lsuv(input='randn(8,3,16,16)')"], seed=0, skip_refused=True)
    assert torch.equal(session.model.features[1].running_mean, running)
    assert "features.1.weight" not in commands[0].rule_plan.targets  # 1-D BatchNorm scale
    assert "features.0.weight" in commands[0].rule_plan.targets


def test_tiny_lm_skips_layers_it_cannot_rescale_with_a_note():
    session = Session(open_source("demo:tiny_lm"))
    before = session.tensor("blocks.layers.0.self_attn.out_proj.weight").detach().clone()
    commands = apply_rules(session, ["*.weight=lsuv(input='randint(4,16,high=100)')"], seed=0, skip_refused=True)
    notes = commands[0].rule_plan.run_notes
    assert any("out_proj" in note and "not called" in note for note in notes)
    assert torch.equal(session.tensor("blocks.layers.0.self_attn.out_proj.weight"), before)
    linear1 = session.model.blocks.layers[0].linear1
    tokens = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(1))
    captured: list[float] = []
    handle = linear1.register_forward_hook(lambda _m, _i, out: captured.append(float(out.detach().std())))
    session.model(tokens)
    handle.remove()
    assert 0.8 < captured[0] < 1.2


def test_catalogue_entry_and_rule_parsing():
    entry = get_initializer("lsuv")
    assert entry.needs_input and {p.name for p in entry.params} == {"tol", "max_iter", "input"}
    rule = parse_rule("*.weight=lsuv(tol=0.05)")
    assert rule.init == "lsuv" and dict(rule.kwargs) == {"tol": 0.05}
    with pytest.raises(RuleError, match="no argument"):
        parse_rule("*.weight=lsuv(tolerance=0.05)")


def test_dropout_draws_come_from_the_seed_and_the_global_stream_is_left_alone():
    def run(global_seed: int) -> torch.Tensor:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(16, 16), nn.Dropout(0.5), nn.Linear(16, 16))
        torch.manual_seed(global_seed)  # the user's global stream differs between the calls
        with torch.no_grad():
            net[0].weight.fill_(0.1)
            net[2].weight.fill_(0.1)
        lsuv_(net, ["0.weight", "2.weight"], "randn(32,16)", generator=torch.Generator().manual_seed(4))
        return net[2].weight.detach().clone()

    assert torch.equal(run(1), run(2))
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    state = torch.random.get_rng_state()
    lsuv_(net, ["0.weight"], "randn(8,4)")
    assert torch.equal(torch.random.get_rng_state(), state)
