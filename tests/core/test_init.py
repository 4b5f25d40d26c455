"""Initializing parameters: the tutorial's steps on demo:mlp / demo:shared, refusals, seeds."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torch.nn import init

from paramscope.core.edit.session import Session
from paramscope.core.errors import RuleError
from paramscope.core.init.custom_init import CustomInitializer, custom_from_source, load_custom
from paramscope.core.init.initializer_base import REQUIRED, InitializerError, nonlinearity_names
from paramscope.core.init.initializers import (
    CATALOGUE,
    TORCH_INITIALIZERS,
    TorchInitializer,
    get_initializer,
)
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rule_plans import RefusedError, plan
from paramscope.core.init.rules import apply_rules, preview_rules
from paramscope.core.init.selectors import Selector
from paramscope.core.model.report import is_lazy
from paramscope.core.sources.sources import open_source
from paramscope.resources import resource_path

EXAMPLE = str(resource_path("examples/init_weight.py"))


def session_of(spec: str = "demo:mlp") -> Session:
    return Session(open_source(spec))


def snapshot(session: Session) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in session.model.state_dict().items() if not is_lazy(v)}


# --- catalogue -----------------------------------------------------------------------------


def test_catalogue_calls_the_real_torch_functions_with_forms_from_their_signatures():
    for name in TORCH_INITIALIZERS:
        entry = CATALOGUE[name]
        assert entry.function is getattr(init, name)
        signature = inspect.signature(getattr(init, name))
        expected = [p for p in signature.parameters if p not in ("tensor", "generator")]
        assert [p.name for p in entry.params] == expected
        assert entry.takes_generator == ("generator" in signature.parameters)
    kaiming = {p.name: p for p in CATALOGUE["kaiming_normal_"].params}
    assert kaiming["mode"].choices == ("fan_in", "fan_out")
    assert "relu" in kaiming["nonlinearity"].choices and "leaky_relu" in nonlinearity_names()
    assert kaiming["nonlinearity"].default == "leaky_relu"
    assert {p.name: p for p in CATALOGUE["constant_"].params}["val"].default is REQUIRED
    assert {p.name: p for p in CATALOGUE["normal_"].params}["std"].default == 1.0


def test_names_with_or_without_underscore_and_unknown_names():
    assert get_initializer("normal").name == "normal_"
    assert get_initializer("kaiming_uniform_").name == "kaiming_uniform_"
    assert get_initializer("default").name == "default"
    # torch's own name for the default, and the trailing-underscore spellings of both
    assert get_initializer("reset_parameters") is get_initializer("default_") is CATALOGUE["default"]
    assert get_initializer("lsuv_") is CATALOGUE["lsuv"]
    with pytest.raises(InitializerError, match="unknown initializer 'gaussian'"):
        get_initializer("gaussian")


# --- the tutorial on demo:mlp --------------------------------------------------------------


def test_tutorial_normal_on_weights_then_constant_on_biases():
    session = session_of()
    apply_rules(session, ["weights=normal(mean=0, std=0.01)", "biases=constant(val=0)"], seed=0)
    weights = torch.cat([session.tensor("0.weight").detach().flatten(), session.tensor("2.weight").detach().flatten()])
    assert 0.003 < float(weights.detach().std()) < 0.03  # 15 samples of N(0, 0.01)
    assert float(weights.abs().max()) < 0.06
    assert torch.count_nonzero(session.tensor("0.bias")) == 0
    assert torch.count_nonzero(session.tensor("2.bias")) == 0


def test_normal_std_on_a_large_tensor_is_close_to_the_requested_std():
    session = session_of("demo:deep_mlp")
    apply_rules(session, ["0.weight=normal(std=0.01)"], seed=1)
    assert float(session.tensor("0.weight").detach().std()) == pytest.approx(0.01, rel=0.05)


def test_tutorial_bimodal_custom_init_from_the_shipped_example():
    session = session_of()
    before_biases = session.tensor("0.bias").detach().clone()
    apply_rules(session, [f"*.weight={EXAMPLE}:init_weight_"], seed=3)
    for name in ("0.weight", "2.weight"):
        values = session.tensor(name).detach().flatten()
        magnitude = values.abs()
        assert bool(((magnitude == 0) | ((magnitude >= 5) & (magnitude <= 10))).all())
    assert torch.equal(session.tensor("0.bias"), before_biases)


def test_custom_initializer_typed_as_source_text_with_and_without_generator():
    session = session_of()
    with_generator = custom_from_source("def f(tensor, generator):\n    tensor.uniform_(2, 3, generator=generator)\n")
    assert isinstance(with_generator, CustomInitializer) and with_generator.takes_generator
    apply_rules(session, [InitRule.make(Selector.of_names(["0.weight"]), with_generator)], seed=5)
    values = session.tensor("0.weight")
    assert bool(((values >= 2) & (values <= 3)).all())
    without = custom_from_source("import torch\ndef g(t):\n    t.copy_(torch.rand(t.shape))\n")
    assert not without.takes_generator
    state = torch.random.get_rng_state()
    first = preview_rules(session, [InitRule.make(Selector.of_names(["2.weight"]), without)], seed=7)[1]
    second = preview_rules(session, [InitRule.make(Selector.of_names(["2.weight"]), without)], seed=7)[1]
    assert torch.equal(first["2.weight"], second["2.weight"])  # seeded through fork_rng
    assert torch.equal(torch.random.get_rng_state(), state)  # the global stream is untouched


def test_a_second_argument_with_a_default_is_a_form_field_not_the_generator():
    scaled = custom_from_source("def f(tensor, scale=2.0):\n    tensor.fill_(scale)\n")
    assert not scaled.takes_generator and [p.name for p in scaled.params] == ["scale"]
    session = session_of()
    apply_rules(session, [InitRule.make(Selector.of_names(["0.bias"]), scaled, scale=3.0)], seed=0)
    assert torch.equal(session.tensor("0.bias"), torch.full((3,), 3.0))


def test_custom_errors_are_one_line_and_name_the_problem(tmp_path):
    with pytest.raises(InitializerError, match="line 1"):
        custom_from_source("def f(t) oops")
    with pytest.raises(InitializerError, match="defines no function"):
        custom_from_source("x = 1")
    with pytest.raises(InitializerError, match="no such file"):
        load_custom(str(tmp_path / "missing.py") + ":f")
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(InitializerError, match="boom"):
        load_custom(f"{broken}:f")
    with pytest.raises(InitializerError, match="no function named 'nope'"):
        load_custom(f"{EXAMPLE}:nope")


def test_tutorial_data_plus_one_on_biases():
    from paramscope.core.edit.value_edits import value_edit_command

    session = session_of()
    apply_rules(session, ["biases=constant(val=0)"])
    session.execute(value_edit_command(session, ["0.bias", "2.bias"], "add", 1.0))
    assert session.tensor("0.bias").tolist() == [1.0, 1.0, 1.0]
    assert session.tensor("2.bias").tolist() == [1.0]


# --- tied parameters: demo:shared ---------------------------------------------------------


def test_initializing_one_alias_changes_the_other_and_says_so():
    session = session_of("demo:shared")
    the_plan = plan(session, ["1.weight=constant(val=3)"])
    hit = the_plan.rules[0].hits[0]
    assert hit.name == "0.weight" and hit.matched == "1.weight"
    assert hit.also_changes == ("0.weight",)
    assert "also changes 0.weight" in the_plan.describe()
    apply_rules(session, ["1.weight=constant(val=3)"])
    assert session.model[0].weight.item() == 3.0
    assert session.model[1].weight.item() == 3.0
    assert session.model[0].weight is session.model[1].weight


def test_star_hits_a_tied_parameter_once():
    session = session_of("demo:shared")
    assert plan(session, ["*=normal"]).rules[0].targets == ["0.weight"]


# --- default (reset_parameters) -----------------------------------------------------------


def test_default_resets_every_tensor_of_the_owning_module_and_lists_them():
    session = session_of()
    apply_rules(session, ["*=constant(val=0)"])
    the_plan = plan(session, ["0.weight=default"])
    assert the_plan.rules[0].modules == ["0"]
    assert the_plan.touched == ["0.weight", "0.bias"]
    assert "reset_parameters() also changes: 0.bias" in the_plan.describe()
    commands = apply_rules(session, ["0.weight=default"], seed=1)
    assert set(commands[0].touched) == {"0.weight", "0.bias"}
    assert torch.count_nonzero(session.tensor("0.weight")) == 12
    assert torch.count_nonzero(session.tensor("0.bias")) == 3
    assert torch.count_nonzero(session.tensor("2.weight")) == 0
    session.undo()
    assert torch.count_nonzero(session.tensor("0.bias")) == 0  # undo restored the bias too


def test_default_resets_batchnorm_buffers_and_undo_restores_them():
    session = session_of("demo:cnn")
    session.tensor("features.1.running_mean").fill_(5.0)
    apply_rules(session, ["features.1.weight=default"], seed=0)
    assert torch.count_nonzero(session.tensor("features.1.running_mean")) == 0
    session.undo()
    assert bool((session.tensor("features.1.running_mean") == 5.0).all())


def test_default_is_repeatable_with_a_seed_and_leaves_the_global_rng():
    one, two = session_of(), session_of()
    state = torch.random.get_rng_state()
    apply_rules(one, ["*=default"], seed=11)
    apply_rules(two, ["*=default"], seed=11)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name in ("0.weight", "0.bias", "2.weight", "2.bias"):
        assert torch.equal(one.tensor(name), two.tensor(name))


# --- refusals: all or nothing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "rule", "reason"),
    [
        ("demo:mlp", "*=eye", "eye_ needs a 2-D tensor, this one is 1-D"),
        ("demo:mlp", "*.weight=dirac", "dirac_ needs a 3-, 4- or 5-D tensor"),
        ("demo:mlp", "*=kaiming_normal", "needs fan_in and fan_out"),
        ("demo:mlp", "*=xavier_uniform", "needs fan_in and fan_out"),
        ("demo:mlp", "*=orthogonal", "orthogonal_ needs at least 2 dimensions"),
        ("demo:mlp", "*=sparse(sparsity=0.5)", "sparse_ needs a 2-D tensor"),
        ("demo:lazy", "*.weight=normal", "uninitialized (lazy) parameter"),
        # arguments torch fails on mid-apply (std=0 divided by zero) or silently misuses (sparsity=2)
        ("demo:mlp", "*.weight=trunc_normal(std=0)", "trunc_normal_: std must be positive, got 0.0"),
        ("demo:mlp", "*.weight=trunc_normal(a=2,b=-2)", "trunc_normal_: the bounds need a < b"),
        ("demo:mlp", "*.weight=normal(std=-1)", "normal_: std must be 0 or more"),
        ("demo:mlp", "*.weight=uniform(a=1,b=-1)", "uniform_: the range needs a <= b"),
        ("demo:mlp", "*.weight=sparse(sparsity=2)", "sparse_: sparsity is the fraction of each column"),
        # torch's rejection sampler kept 1 draw in 3 million: the window froze for minutes
        ("demo:mlp", "*.weight=trunc_normal(mean=100,std=0.01,a=-1,b=2.5)", "would keep about 1 draw in 3,412,500"),
        ("demo:lstm", "embed.*=default", None),
    ],
)
def test_refused_targets_apply_nothing_and_say_which(spec, rule, reason):
    session = session_of(spec)
    before = snapshot(session)
    if reason is None:  # a valid request: applies
        apply_rules(session, [rule], seed=0)
        return
    with pytest.raises(RefusedError) as caught:
        apply_rules(session, [rule], seed=0)
    message = str(caught.value)
    assert reason in message and "nothing applied" in message and "\n" not in message
    assert caught.value.plan.refusals
    after = snapshot(session)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not session.stack.can_undo


def test_refusal_in_a_later_rule_keeps_earlier_rules_unapplied():
    session = session_of()
    before = snapshot(session)
    with pytest.raises(RefusedError, match="0.bias"):
        apply_rules(session, ["*.weight=normal", "re:^0\\.=xavier_uniform(gain=1.0)"])
    assert all(torch.equal(before[k], v) for k, v in snapshot(session).items())


def test_valid_shapes_are_accepted_eye_dirac_orthogonal():
    session = session_of("demo:cnn")
    apply_rules(session, ["features.0.weight=dirac", "classifier.weight=eye", "features.4.weight=orthogonal"])
    weight = session.tensor("classifier.weight")
    assert torch.equal(weight, torch.eye(10, 16))


def test_module_without_reset_parameters_is_refused():
    session = session_of("demo:tiny_lm")
    with pytest.raises(RefusedError, match="MultiheadAttention has no reset_parameters"):
        apply_rules(session, ["blocks.layers.0.self_attn.in_proj_weight=default"])


def test_wrong_arguments_name_the_rule():
    session = session_of()
    with pytest.raises(RuleError, match=r"rule '\*=normal\(sd=1\)': normal_ has no argument 'sd'"):
        apply_rules(session, ["*=normal(sd=1)"])


# --- seeds ---------------------------------------------------------------------------------


def test_same_seed_gives_bytes_of_a_plain_script_with_that_generator():
    session = session_of()
    apply_rules(
        session,
        ["*.weight=kaiming_uniform(a=0.1, nonlinearity=relu)", "*.bias=uniform(a=-0.5, b=0.5)"],
        seed=1234,
    )
    reference = open_source("demo:mlp").model
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if "weight" in name:
                init.kaiming_uniform_(param, a=0.1, nonlinearity="relu", generator=generator)
        for name, param in reference.named_parameters():
            if "bias" in name:
                init.uniform_(param, a=-0.5, b=0.5, generator=generator)
    for name, param in reference.named_parameters():
        assert torch.equal(session.tensor(name), param), name


def test_different_seeds_differ_and_no_seed_records_the_one_used():
    one, two = session_of(), session_of()
    apply_rules(one, ["*.weight=normal"], seed=1)
    apply_rules(two, ["*.weight=normal"], seed=2)
    assert not torch.equal(one.tensor("0.weight"), two.tensor("0.weight"))
    three = session_of()
    command = apply_rules(three, ["*.weight=normal"])[0]
    four = session_of()
    apply_rules(four, ["*.weight=normal"], seed=command.seed)
    assert torch.equal(three.tensor("0.weight"), four.tensor("0.weight"))
    five = session_of()  # no seed twice: two fresh seeds (equal once in 2**64 runs)
    assert apply_rules(five, ["*.weight=normal"])[0].seed != command.seed
    assert not torch.equal(five.tensor("0.weight"), three.tensor("0.weight"))
    assert f"seed {command.seed}" in command.text


def test_preview_matches_apply_and_does_not_touch_the_model():
    session = session_of()
    before = snapshot(session)
    the_plan, preview = preview_rules(session, ["*.weight=xavier_normal(gain=2.0)", "*=default"], seed=8)
    assert all(torch.equal(before[k], v) for k, v in snapshot(session).items())
    assert set(preview) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    apply_rules(session, ["*.weight=xavier_normal(gain=2.0)", "*=default"], seed=8)
    for name, tensor in preview.items():
        assert torch.equal(session.tensor(name), tensor), name


def test_inits_leave_gradients_as_they_were():
    session = session_of()
    session.model(torch.ones(2, 4)).sum().backward()
    grad = session.tensor("0.weight").grad.clone()
    apply_rules(session, ["*.weight=normal(std=0.01)"], seed=0)
    assert torch.equal(session.tensor("0.weight").grad, grad)
    assert session.tensor("0.weight").requires_grad


@pytest.mark.parametrize("name", TORCH_INITIALIZERS)
def test_every_torch_initializer_applies_to_a_parameter_with_gradients_on(name: str) -> None:
    """Applied outside no_grad (a script's call): torch's function turns gradients off itself."""
    assert torch.is_grad_enabled()
    weight = nn.Parameter(torch.zeros(6, 4, 3) if name == "dirac_" else torch.zeros(6, 4))
    kwargs = {"val": 0.5} if name == "constant_" else {"sparsity": 0.5} if name == "sparse_" else {}
    TorchInitializer(name).apply(weight, kwargs, torch.Generator().manual_seed(0))
    assert weight.is_leaf and weight.grad_fn is None and weight.requires_grad
    if name != "zeros_":
        assert torch.count_nonzero(weight) > 0



@pytest.mark.parametrize(("mean", "std", "a", "b"), [(3.0, 1.0, -1.0, 0.0), (0.0, 0.01, 0.05, 1.0), (0.0, 1.0, 2.0, 3.0), (9.0, 0.3, 0.0, 1.0), (13.0, 0.3, 0.0, 1.0)])
def test_trunc_normal_acceptance_is_the_share_torchs_sampler_keeps(mean, std, a, b) -> None:
    """Checked against the sampler's own rule, integrated numerically: a uniform draw x in [a, b]
    is kept with probability exp(logpdf(x) - logpdf(peak))."""
    from paramscope.core.init.initializers import trunc_normal_acceptance

    x = torch.linspace(a, b, 2_000_001, dtype=torch.float64)
    peak = min(max(mean, a), b)
    kept = torch.exp(-0.5 * ((x - mean) / std) ** 2 + 0.5 * ((peak - mean) / std) ** 2).mean().item()
    assert trunc_normal_acceptance(mean, std, a, b) == pytest.approx(kept, rel=0.02)
