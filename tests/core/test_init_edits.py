"""Value edits outside autograd, theoretical densities, and the replay script."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from paramscope.core.edit.replay import replay_script
from paramscope.core.edit.session import Session
from paramscope.core.edit.value_edits import ValueEditError, value_edit_command
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.custom_init import custom_from_source
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rules import apply_rules
from paramscope.core.init.selectors import Selector
from paramscope.core.init.theory import theory_for
from paramscope.core.model.tensor_stats import tensor_histogram
from paramscope.core.sources.sources import open_source
from paramscope.resources import resource_path


def session_of(spec: str = "demo:mlp") -> Session:
    return Session(open_source(spec))


# --- value edits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "kwargs", "expected"),
    [
        ("add", {"value": 1.0}, lambda x: x + 1),
        ("multiply", {"value": -2.0}, lambda x: x * -2),
        ("set", {"value": 0.5}, lambda x: torch.full_like(x, 0.5)),
        ("clamp", {"low": -0.1, "high": 0.1}, lambda x: x.clamp(-0.1, 0.1)),
        ("clamp", {"low": 0.0}, lambda x: x.clamp(min=0.0)),
        ("expression", {"expression": "x * 2 + 1"}, lambda x: x * 2 + 1),
    ],
)
def test_value_edits_change_data_and_leave_grad_alone(kind, kwargs, expected):
    session = session_of()
    session.model(torch.ones(2, 4)).sum().backward()
    weight = session.tensor("0.weight")
    before, grad = weight.detach().clone(), weight.grad.clone()
    session.execute(value_edit_command(session, ["0.weight"], kind, **kwargs))
    assert torch.equal(weight.detach(), expected(before))
    assert torch.equal(weight.grad, grad)
    assert weight.grad_fn is None and weight.requires_grad
    session.undo()
    assert torch.equal(weight.detach(), before)


def test_value_edit_on_one_alias_changes_the_shared_parameter_once():
    session = session_of("demo:shared")
    session.tensor("0.weight").data.fill_(3.0)
    session.execute(value_edit_command(session, ["0.weight", "1.weight"], "add", 1.0))
    assert session.model[1].weight.item() == 4.0  # added once, not twice


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((["0.weight"], "add"), "needs a value"),
        ((["0.weight"], "clamp"), "give a lower bound"),
        (([], "add", 1.0), "no tensors selected"),
        ((["nope"], "add", 1.0), "no tensor named 'nope'"),
        ((["0.weight"], "square", 1.0), "unknown value edit"),
    ],
)
def test_bad_value_edits_are_refused(args, message):
    session = session_of()
    with pytest.raises(ValueEditError, match=message):
        value_edit_command(session, *args)


def test_bad_expression_and_clamp_bounds_are_refused():
    session = session_of()
    with pytest.raises(ParamscopeError, match="attribute access"):
        value_edit_command(session, ["0.weight"], "expression", expression="__import__('os').system('true')")
    with pytest.raises(ValueEditError, match="above upper bound"):
        value_edit_command(session, ["0.weight"], "clamp", low=1.0, high=0.0)
    with pytest.raises(ValueEditError, match="lazy"):
        value_edit_command(session_of("demo:lazy"), ["0.weight"], "add", 1.0)


# --- theory --------------------------------------------------------------------------------


def test_kaiming_text_and_numbers_come_from_torch_fans_and_gain():
    theory = theory_for("kaiming_normal_", {"nonlinearity": "relu", "mode": "fan_in"}, (3, 4))
    assert theory.text == "kaiming_normal_, fan_in=4, gain=√2 → std=0.707"
    assert theory.fan_in == 4 and theory.fan_out == 3
    assert theory.std == pytest.approx(math.sqrt(2 / 4))
    fan_out = theory_for("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}, (3, 4))
    assert fan_out.family == "uniform" and fan_out.high == pytest.approx(math.sqrt(3) * math.sqrt(2 / 3))
    conv = theory_for("xavier_normal", {"gain": 2.0}, (8, 3, 3, 3))
    assert (conv.fan_in, conv.fan_out) == (27, 72)
    assert conv.std == pytest.approx(2.0 * math.sqrt(2 / (27 + 72)))


def test_no_theory_where_there_is_no_simple_density():
    assert theory_for("constant_", {"val": 0}, (3, 4)) is None
    assert theory_for("orthogonal_", {}, (3, 4)) is None
    assert theory_for("kaiming_normal_", {}, (3,)) is None


@pytest.mark.parametrize(
    ("name", "kwargs", "std_of_values"),
    [
        ("normal_", {"std": 0.5}, 0.5),
        ("uniform_", {"a": -1.0, "b": 3.0}, 4 / math.sqrt(12)),
        ("kaiming_normal_", {"nonlinearity": "relu"}, math.sqrt(2 / 400)),
        ("xavier_uniform_", {}, math.sqrt(2 / 800)),
        ("trunc_normal_", {"std": 1.0, "a": -1.0, "b": 1.0}, None),
    ],
)
def test_theory_curve_matches_the_histogram_of_real_draws(name, kwargs, std_of_values):
    tensor = torch.empty(400, 400)
    generator = torch.Generator().manual_seed(0)
    getattr(torch.nn.init, name)(tensor, **kwargs, generator=generator)
    theory = theory_for(name, kwargs, tuple(tensor.shape))
    if std_of_values is not None:
        assert theory.std == pytest.approx(std_of_values)
    histogram = tensor_histogram(tensor, bins=40)
    _, expected = theory.curve(histogram.edges, histogram.total, points=len(histogram.centers))
    expected_at_centers = theory.pdf(histogram.centers) * histogram.total * np.diff(histogram.edges)
    inner = histogram.counts > 1000  # compare where the counts are large enough to be stable
    assert np.allclose(histogram.counts[inner], expected_at_centers[inner], rtol=0.1)
    assert expected.max() > 0


# --- replay --------------------------------------------------------------------------------


def test_replay_script_reproduces_identical_tensors(tmp_path):
    session = session_of()
    example = resource_path("examples/init_weight.py")
    # one request, one generator: the third rule draws where the first left it
    apply_rules(session, ["*.weight=normal(mean=0,std=0.01)", "*.bias=constant(val=0)", "2.*=uniform(a=-0.1,b=0.1)"], seed=3)
    apply_rules(session, ["0.*=default"], seed=4)
    apply_rules(session, [f"*.weight={example}:init_weight_"], seed=5)
    typed = custom_from_source("def f(t):\n    t.uniform_(-1, 1)\n")
    apply_rules(session, [InitRule.make(Selector.of_names(["2.weight"]), typed)], seed=9)
    session.execute(value_edit_command(session, ["0.bias", "2.bias"], "add", 1.0))
    session.execute(value_edit_command(session, ["0.weight"], "expression", expression="x * 2 + 1"))
    session.execute(value_edit_command(session, ["2.bias"], "multiply", 10.0))
    session.undo()  # an undone change is not replayed
    replayed = _replayed(session, tmp_path)
    current = session.model.state_dict()
    assert set(replayed) == set(current)
    for name, tensor in current.items():
        assert torch.equal(replayed[name], tensor), name
    assert "mul_" not in (tmp_path / "replay.py").read_text()


def test_dtypes_torch_cannot_draw_into_are_drawn_in_float32_and_replayed(tmp_path):
    """orthogonal_ of a bfloat16 weight (how large checkpoints come) failed with "geqrf_cpu not
    implemented for 'BFloat16'", and every random init of a float8 one with "normal_kernel_cpu":
    the values are drawn in float32 and rounded in, and the replay script does the same."""
    from safetensors.torch import save_file

    from paramscope.core.init.initializers import drawn_in_float32

    path = tmp_path / "low.safetensors"
    generator = torch.Generator().manual_seed(0)
    weights = {
        "a.weight": torch.randn(4, 6, generator=generator).to(torch.float8_e4m3fn),
        "b.weight": torch.randn(6, 6, generator=generator).bfloat16(),
        "c.weight": torch.randn(5, 3, generator=generator).half(),
        "d.weight": torch.randn(3, 3, generator=generator),  # float32: drawn as it is
    }
    save_file(weights, str(path))
    session = Session(open_source(str(path)))
    apply_rules(session, ["*.weight=orthogonal_", "a.*=normal_(std=0.5)"], seed=7)

    g = torch.Generator().manual_seed(7)  # by hand: float32 draws in the same order, rounded
    expected = {}
    for name, tensor in weights.items():
        drawn = torch.empty(tensor.shape)
        torch.nn.init.orthogonal_(drawn, generator=g)
        expected[name] = drawn.to(tensor.dtype)
    drawn = torch.empty(4, 6)
    torch.nn.init.normal_(drawn, std=0.5, generator=g)
    expected["a.weight"] = drawn.to(torch.float8_e4m3fn)
    for name, want in expected.items():
        assert _bits(session.tensor(name)) == _bits(want), name
    rows = session.tensor("b.weight").float()
    assert torch.allclose(rows @ rows.T, torch.eye(6), atol=0.03)  # orthogonal, to bfloat16's precision
    assert not drawn_in_float32("orthogonal_", torch.float32) and not drawn_in_float32("zeros_", torch.float8_e4m3fn)

    replayed = _replayed(session, tmp_path)
    for name in weights:
        assert _bits(replayed[name]) == _bits(session.tensor(name)), name


def test_value_edits_of_every_dtype_apply_or_say_why_and_replay(tmp_path):
    """Adding 1 to an int64 tensor failed ("result type Float can't be cast"), adding to a float8
    or uint32 one ("add_stub not implemented"): torch errors instead of an edit or a reason."""
    from safetensors.torch import save_file


    tensors = {
        "f8": torch.tensor([1.0, -2.0, 448.0]).to(torch.float8_e4m3fn),
        "i64": torch.tensor([7, -3, 2**63 - 1], dtype=torch.int64),
        "u32": torch.tensor([3, 5, 2**32 - 1], dtype=torch.uint32),
        "u64": torch.tensor([5, 2**63, 2**64 - 1], dtype=torch.uint64),
        "mask": torch.tensor([True, False, True]),
    }
    path = tmp_path / "dtypes.safetensors"
    save_file(tensors, str(path))
    session = Session(open_source(str(path)))
    for names, kind, numbers in [(["f8", "i64", "u32", "u64"], "add", {"value": 2.0}), (["f8", "i64"], "multiply", {"value": -1.0}),
                                 (["f8", "i64", "u32"], "clamp", {"low": -1.0, "high": 6.0})]:  # fmt: skip
        session.execute(value_edit_command(session, names, kind, **numbers))
    assert session.tensor("f8").float().tolist() == [-1.0, 0.0, -1.0]  # +2, *-1: [-3, 0, -448]; clamped
    assert session.tensor("i64").tolist() == [-1, 1, 6]  # 2**63 - 1 + 2 wraps to -2**63 + 1; *-1; clamped
    assert session.tensor("u32").tolist() == [5, 6, 1]  # 2**32 - 1 + 2 wraps to 1, as unsigned arithmetic does
    assert session.tensor("u64").tolist() == [7, 2**63 + 2, 1]
    for names, kind, numbers, reason in [
        (["i64"], "add", {"value": 0.5}, "add: i64 is int64: add by whole numbers only"),
        (["mask"], "add", {"value": 1.0}, "add: mask is a bool tensor: set it to 0 or 1, or write an expression"),
        (["u64"], "clamp", {"low": 0.0, "high": 1.0}, "clamp: u64 is uint64, which torch cannot clamp: write an expression"),
    ]:
        with pytest.raises(ValueEditError) as info:
            value_edit_command(session, names, kind, **numbers)
        assert str(info.value) == reason

    replayed = _replayed(session, tmp_path)
    for name in tensors:
        assert _bits(replayed[name]) == _bits(session.tensor(name)), name


def _replayed(session: Session, tmp_path) -> dict[str, torch.Tensor]:
    """The state_dict the session's replay script writes, run as a user runs it."""
    script = tmp_path / "replay.py"
    script.write_text(replay_script(session))
    out = tmp_path / "out.pt"
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return torch.load(out, weights_only=True)


def _bits(tensor: torch.Tensor) -> bytes:
    return tensor.detach().contiguous().view(torch.uint8).numpy().tobytes()


def test_replay_of_tied_model_and_unreplayable_commands_are_flagged(tmp_path):
    from paramscope.core.edit.commands import TensorEditCommand

    session = session_of("demo:shared")
    apply_rules(session, ["1.weight=kaiming_uniform(a=0.2)"], seed=1)
    weight = session.tensor("0.weight")
    session.execute(TensorEditCommand("load weights", [("0.weight", weight)], lambda: weight.detach().fill_(2.0)))
    text = replay_script(session)
    assert "change 2 (load weights) cannot be replayed" in text
    compile(text, "replay.py", "exec")
