"""Fans: the theory overlay and torch's initializers agree; grouped/transposed convs get a note."""

from __future__ import annotations

import pytest
import torch
from small_models import StackedExperts, tiny_mixtral
from torch import nn
from torch.nn import init

from paramscope.cli import main
from paramscope.core.init.rule_plans import plan
from paramscope.core.init.theory import theory_for
from paramscope.core.model.fans import connection_fans, fan_note, torch_fans
from paramscope.core.model.report import build_report

SHAPES = {
    "linear": (300, 200),
    "conv1d": (64, 16, 5),
    "conv2d grouped": nn.Conv2d(64, 128, 3, groups=4).weight.shape,
    "depthwise": nn.Conv2d(96, 96, 5, groups=96).weight.shape,
    "conv transpose": nn.ConvTranspose2d(32, 48, 4, stride=2).weight.shape,
    "conv3d": (16, 8, 3, 3, 3),
}
INITS = [
    ("xavier_normal_", {}),
    ("xavier_uniform_", {"gain": 2.0}),
    ("kaiming_normal_", {"nonlinearity": "relu"}),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_uniform_", {"a": 0.1}),
]


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize(("name", "kwargs"), INITS)
def test_theory_std_is_what_torchs_own_initializer_draws(shape_name, name, kwargs):
    shape = tuple(SHAPES[shape_name])
    theory = theory_for(name, kwargs, shape)
    tensor = torch.empty(shape, dtype=torch.float64)
    assert (theory.fan_in, theory.fan_out) == torch_fans(tensor)
    draws = [getattr(init, name)(tensor.clone(), **kwargs, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    empirical = torch.cat([d.flatten() for d in draws]).std().item()
    assert empirical == pytest.approx(theory.std, rel=0.03)


def test_issue_23854_depthwise_fan_out():
    conv = nn.Conv2d(4, 4, 3, groups=4)
    note = connection_fans(conv, conv.weight)
    assert (note.torch_fan_in, note.torch_fan_out) == (9, 36)  # what torch computes
    assert (note.fan_in, note.fan_out) == (9, 9)  # what the issue expects
    assert "23854" in note.why
    assert fan_note(conv, conv.weight, "kaiming_normal_", {"mode": "fan_in"}) is None  # fan_in is right
    text = fan_note(conv, conv.weight, "kaiming_normal_", {"mode": "fan_out"})
    assert "torch's fan_out=36" in text and "fan_out=9" in text


def test_transposed_conv_fans_are_read_the_other_way_round():
    conv = nn.ConvTranspose2d(16, 4, 3)
    note = connection_fans(conv, conv.weight)
    assert (note.torch_fan_in, note.torch_fan_out) == (36, 144)
    assert (note.fan_in, note.fan_out) == (144, 36)
    assert "fan_in=144" in fan_note(conv, conv.weight, "default", {})  # reset_parameters uses fan_in
    grouped = nn.ConvTranspose1d(8, 12, 3, groups=4, stride=2)
    note = connection_fans(grouped, grouped.weight)
    assert (note.fan_in, note.fan_out) == (2 * 3, 3 * 3) and "1/2" in note.why


def test_plain_layers_get_no_note():
    for module in (nn.Linear(4, 3), nn.Conv2d(3, 8, 3)):
        assert connection_fans(module, module.weight) is None
        assert fan_note(module, module.weight, "xavier_uniform_", {}) is None
    conv = nn.Conv2d(8, 8, 3, groups=8)
    assert fan_note(conv, conv.weight, "normal_", {}) is None  # no fan used


def test_plan_carries_the_note_for_fan_based_rules_only():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Linear(4, 4))
    report = build_report(model)
    the_plan = plan((report, model), ["*.weight=xavier_uniform", "*.weight=normal(std=0.1)"])
    xavier, normal = the_plan.rules
    assert len(xavier.notes) == 1 and xavier.notes[0].startswith("0.weight: torch's fan_out=72")
    assert "note: 0.weight" in the_plan.describe()
    assert normal.notes == []


def test_cli_dry_run_shows_both_numbers(tmp_path, capsys):
    model_file = tmp_path / "net.py"
    model_file.write_text("from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))\n")
    code = main(["init", f"{model_file}:net", "--rule", "*.weight=kaiming_uniform(mode=fan_out)", "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert "note: 0.weight: torch's fan_out=36, per connection fan_out=9" in out and "pytorch/pytorch#23854" in out


@pytest.mark.parametrize("is_transposed", [False, True])
def test_stacked_experts_have_each_matrixs_fans(is_transposed: bool) -> None:
    """torch reads (experts, out, in) as a convolution's weight: fan_in = out * in = 24 where each
    expert's matrix has fan_in 4 (kaiming draws it sqrt(6) times too small)."""
    module = StackedExperts(is_transposed)
    note = connection_fans(module, module.up)
    assert note is not None and (note.fan_in, note.fan_out) == (4, 6)
    assert (note.torch_fan_in, note.torch_fan_out) == torch_fans(module.up)
    layout = "(experts, in, out)" if is_transposed else "(experts, out, in)"
    assert fan_note(module, module.up, "kaiming_uniform_", {}) == (
        f"torch's fan_in={torch_fans(module.up)[0]}, per connection fan_in=4 (StackedExperts: 3 experts' matrices "
        f"stacked {layout}, torch reads them as one convolution's weight)"
    )


def test_a_mixtral_experts_rule_says_so_in_the_plan() -> None:
    model = tiny_mixtral()
    the_plan = plan((build_report(model), model), [r"re:experts\.=kaiming_uniform_"])
    notes = the_plan.rules[0].notes
    assert "model.layers.0.mlp.experts.gate_up_proj: torch's fan_in=1024, per connection fan_in=16 (MixtralExperts" in notes[0]
    assert "model.layers.0.mlp.experts.down_proj: torch's fan_in=512, per connection fan_in=32" in notes[1]
