"""Backward on a sample input: gradients, per-use parts, accumulate, errors, diagnostics."""

from __future__ import annotations

from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F
from small_models import FailsInBackward, TiedEmbedding
from torch import nn

from paramscope.core.backward.backward import BackwardRequest, run, run_backward, zero_grad
from paramscope.core.backward.backward_errors import (
    BackwardError,
    BackwardUnavailable,
    ForwardError,
)
from paramscope.core.backward.grad_summary import DIRECT_USE
from paramscope.core.backward.inputs import default_input
from paramscope.core.backward.losses import LossError, compute_loss
from paramscope.core.errors import Cancelled
from paramscope.core.sources.demos import DEMOS, build_demo
from paramscope.core.sources.sources import OpenedModel, open_source
from paramscope.core.tasks import TaskState


def plain_pytorch_grads(
    model: nn.Module, spec, seed: int = 0, times: int = 1
) -> dict[str, torch.Tensor]:
    """What a user's own loop computes: net(X).sum().backward(), ``times`` times."""
    tensors = spec.make(seed)
    for _ in range(times):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model(*tensors).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def model_fingerprint(model: nn.Module):
    params = [
        (n, p, p.detach().clone(), p.grad, None if p.grad is None else p.grad.clone())
        for n, p in model.named_parameters()
    ]
    buffers = [(n, b.clone()) for n, b in model.named_buffers()]
    flags = [(n, m.training) for n, m in model.named_modules()]
    hooks = [
        (
            n,
            len(m._forward_pre_hooks),
            len(m._forward_hooks),
            len(m._backward_hooks),
            len(m._backward_pre_hooks),
        )
        for n, m in model.named_modules()
    ]
    return params, buffers, flags, hooks


def assert_unchanged(model: nn.Module, fingerprint) -> None:
    params, buffers, flags, hooks = fingerprint
    now = dict(model.named_parameters())
    for name, param, values, grad, grad_values in params:
        assert now[name] is param
        assert torch.equal(param.detach(), values)
        assert param.grad is grad  # the very same tensor object (or None)
        if grad is not None:
            assert torch.equal(param.grad, grad_values)
    for name, values in buffers:
        assert torch.equal(dict(model.named_buffers())[name], values)
    assert [(n, m.training) for n, m in model.named_modules()] == flags
    assert model_fingerprint(model)[3] == hooks


# --- the tutorial --------------------------------------------------------------------------------


def test_tutorial_shared_weight_3_and_ones_give_output_9_and_grad_6_equal_3_plus_3():
    opened = open_source("demo:shared")
    net = opened.model
    nn.init.constant_(net[0].weight, 3.0)
    assert net[0].weight.grad is None

    result = run_backward(opened, "ones(1, 1)", "sum")

    assert result.output.value == 9.0
    assert result.loss == 9.0
    assert net[0].weight.grad.tolist() == [[6.0]]
    entry = result.parameters["0.weight"]
    assert entry.aliases == ("0.weight", "1.weight")
    assert [part.module for part in entry.parts] == ["0", "1"]
    assert [part.values.item() for part in entry.parts] == [3.0, 3.0]
    assert entry.values.item() == 6.0


def test_mlp_gradients_are_none_before_and_finite_after():
    model = build_demo("mlp")
    assert all(p.grad is None for p in model.parameters())
    result = run_backward(model, default_input(model), "sum")
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert result.parameters[name].grad.nonfinite == 0
        assert result.parameters[name].received
    assert result.output.to_dict()["shape"] == [2, 1]


@pytest.mark.parametrize("demo", sorted(DEMOS))
def test_gradients_equal_plain_pytorch_bit_for_bit(demo):
    spec = default_input(build_demo(demo))
    expected = plain_pytorch_grads(build_demo(demo), spec)
    model = build_demo(demo)
    run_backward(model, spec, "sum")
    got = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.equal(got[name], expected[name]), name


def test_accumulate_twice_doubles_and_matches_pytorch_accumulation():
    spec = default_input(build_demo("mlp"))
    model = build_demo("mlp")
    first = run_backward(model, spec, "sum")
    once = {n: p.grad.clone() for n, p in model.named_parameters()}
    grad_object = model[0].weight.grad
    second = run_backward(model, spec, "sum", accumulate=True)
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, once[name] * 2), name
    assert model[0].weight.grad is grad_object  # added in place, as AccumulateGrad does
    expected = plain_pytorch_grads(build_demo("mlp"), spec, times=2)
    for name, param in model.named_parameters():
        assert torch.equal(param.grad, expected[name])
    assert second.parameters["0.weight"].grad.norm == pytest.approx(
        2 * first.parameters["0.weight"].grad.norm
    )


def test_default_mode_replaces_the_gradient():
    model = build_demo("mlp")
    run_backward(model, "rand(2, 4)")
    once = model[0].weight.grad.clone()
    run_backward(model, "rand(2, 4)")
    assert torch.equal(model[0].weight.grad, once)


def test_zero_grad_sets_gradients_to_none():
    model = build_demo("mlp")
    run_backward(model, "rand(2, 4)")
    assert zero_grad(model) == 4
    assert all(p.grad is None for p in model.parameters())
    assert zero_grad(model) == 0


def test_tied_head_and_embedding_parts_sum_to_the_total():
    model = build_demo("tiny_lm")
    result = run_backward(model, default_input(model), "sum")
    entry = result.parameters["embed.weight"]
    assert [p.module for p in entry.parts] == ["embed", "head"]
    assert "head.weight" in entry.aliases
    norms = [p.stats.norm for p in entry.parts]
    assert all(n > 0 for n in norms)
    assert entry.grad.norm <= sum(norms) * (1 + 1e-9)  # the parts add up to the total


def test_parts_sum_to_the_total_and_total_is_pytorchs():
    model = TiedEmbedding()
    ids = torch.tensor([[0, 1, 1, 4]])
    result = run_backward(model, ids, "l2")
    parts = result.parameters["embed.weight"].parts
    assert [p.module for p in parts] == ["embed", "head"]
    assert torch.allclose(
        parts[0].values + parts[1].values, model.embed.weight.grad, rtol=0, atol=1e-6
    )

    reference = TiedEmbedding()
    reference.load_state_dict(model.state_dict())
    reference(ids).pow(2).sum().backward()
    assert torch.equal(model.embed.weight.grad, reference.embed.weight.grad)


class CalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.fc(x)))


def test_a_module_called_twice_under_one_name_gives_two_parts():
    model = CalledTwice()
    result = run_backward(model, "rand(3, 2)")
    for name in ("fc.weight", "fc.bias"):
        parts = result.parameters[name].parts
        assert [p.module for p in parts] == ["fc", "fc (call 2)"]
        total = dict(model.named_parameters())[name].grad
        assert torch.allclose(parts[0].values + parts[1].values, total, atol=1e-6)


class DirectUse(nn.Module):
    """The root reads its child's weight directly: a use no child call can see."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2, bias=False)

    def forward(self, x):
        return F.linear(self.fc(x), self.fc.weight)


def test_uses_outside_module_calls_show_as_a_direct_use_part():
    model = DirectUse()
    result = run_backward(model, "rand(3, 2)")
    parts = result.parameters["fc.weight"].parts
    assert [p.module for p in parts] == ["fc", DIRECT_USE]
    assert torch.allclose(parts[0].values + parts[1].values, model.fc.weight.grad, atol=1e-6)


def test_without_record_parts_no_parts_and_same_total():
    model = build_demo("shared")
    result = run_backward(model, "ones(1, 1)", record_parts=False)
    assert result.parameters["0.weight"].parts == ()
    assert model[0].weight.grad is not None


# --- diagnostics ---------------------------------------------------------------------------------


def test_dead_relu_row_is_detected_like_the_tutorials_third_row():
    model = build_demo("mlp")
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([10.0, 10.0, -100.0]))  # unit 2 never fires on [0, 1)
    result = run_backward(model, "rand(8, 4)")
    assert model[0].weight.grad[2].abs().sum() == 0
    assert result.parameters["0.weight"].dead_rows == (2,)
    dead = [d for d in result.diagnostics if d.kind == "dead_rows"]
    assert dead and dead[0].names == ("0.weight",) and "rows 2 of 3" in dead[0].message


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(2, 1)
        self.unused = nn.Linear(2, 1)
        self.detached = nn.Linear(2, 1)

    def forward(self, x):
        return self.used(x) + self.detached(x).detach()


def test_parameters_without_a_gradient_path_are_reported():
    model = Unused()
    result = run_backward(model, "rand(2, 2)")
    assert model.unused.weight.grad is None and model.detached.weight.grad is None
    assert result.parameters["unused.weight"].grad is None
    assert not result.parameters["detached.bias"].received
    reported = {d.names[0] for d in result.diagnostics if d.kind == "no_grad"}
    assert reported == {"unused.weight", "unused.bias", "detached.weight", "detached.bias"}
    assert result.to_dict()["parameters"][2]["grad"] is None


def test_frozen_parameters_are_reported():
    model = build_demo("mlp")
    model[2].bias.requires_grad_(False)
    result = run_backward(model, "rand(2, 4)")
    frozen = [d for d in result.diagnostics if d.kind == "frozen"]
    assert [d.names for d in frozen] == [("2.bias",)]
    assert model[2].bias.grad is None


class SqrtOfZero(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return (x * self.w).sqrt()


def test_nan_gradients_are_counted_and_reported():
    result = run_backward(SqrtOfZero(), "zeros(2, 3)")
    assert result.parameters["w"].grad.nan == 3
    assert any(d.kind == "nonfinite_grad" and d.severity == "error" for d in result.diagnostics)


# --- errors leave everything as it was ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("rand(2, 5)", "mat1 and mat2"),
        ("randint(2, 4, high=3)", "dtype"),
        ("rand(2, 4); rand(2, 4)", "TypeError"),
    ],
)
def test_a_forward_that_raises_leaves_the_model_bit_identical(spec, fragment):
    model = build_demo("mlp")
    run_backward(model, "rand(2, 4)")  # gradients exist, so "unchanged" means something
    model.eval()
    model[0].train()
    before = model_fingerprint(model)
    with pytest.raises(ForwardError) as info:
        run_backward(model, spec, train=True)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert_unchanged(model, before)


def test_the_error_names_the_innermost_module():
    model = build_demo("mlp")
    with pytest.raises(ForwardError) as info:
        run_backward(model, "rand(2, 5)")
    assert info.value.module == "0" and info.value.type_name == "Linear"
    assert str(info.value).startswith("forward failed in 0 (Linear):")

    lm = build_demo("tiny_lm")
    with pytest.raises(ForwardError) as info:
        run_backward(lm, "randint(2, 8, high=1000)")  # token ids beyond the vocabulary
    assert info.value.module == "embed"


def test_a_loss_that_does_not_fit_leaves_gradients_unchanged():
    model = build_demo("mlp")
    run_backward(model, "rand(2, 4)")
    before = model_fingerprint(model)
    with pytest.raises(LossError) as info:
        run_backward(model, "rand(2, 4)", "cross_entropy")
    assert "(2, 1)" in str(info.value)
    assert_unchanged(model, before)


class BreaksInBackward(nn.Module):
    """The head's gradients are written before the failure below it is reached."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.head = nn.Linear(3, 1)

    def forward(self, x):
        return self.head(FailsInBackward.apply(self.fc(x)))


def test_a_backward_that_raises_while_replacing_leaves_gradients_cleared_like_zero_grad():
    model = BreaksInBackward()
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    weights = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(BackwardError, match=r"simulated failure in backward; \.grad cleared"):
        run_backward(model, "rand(2, 4)")
    assert all(p.grad is None for p in model.parameters())  # also the head's, written first
    assert all(torch.equal(w, p.detach()) for w, p in zip(weights, model.parameters(), strict=True))


def test_a_backward_that_raises_while_accumulating_leaves_gradients_as_they_were():
    model = BreaksInBackward()
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    before = model_fingerprint(model)
    with pytest.raises(BackwardError, match=r"\.grad left as they were"):
        run_backward(model, "rand(2, 4)", accumulate=True)
    assert_unchanged(model, before)


def test_cancel_before_backward_changes_nothing():
    model = build_demo("mlp")
    before = model_fingerprint(model)
    state = TaskState()
    state.cancel()
    with pytest.raises(Cancelled):
        run_backward(model, "rand(2, 4)", state=state)
    assert_unchanged(model, before)


def test_no_forward_says_why():
    opened = OpenedModel(
        nn.Linear(2, 2),
        "weights.safetensors",
        "state_dict",
        forward_unavailable="a state_dict has no forward code",
    )
    with pytest.raises(BackwardUnavailable) as info:
        run_backward(opened, "rand(2, 2)")
    assert str(info.value) == "backward unavailable: a state_dict has no forward code"


def test_all_frozen_is_a_clear_error():
    model = build_demo("mlp").requires_grad_(False)
    with pytest.raises(BackwardError, match="does not depend on any parameter"):
        run_backward(model, "rand(2, 4)")


def test_batchnorm_statistics_mode_and_global_rng_are_kept():
    model = build_demo("cnn")
    before = model_fingerprint(model)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    run_backward(model, default_input(model), train=False)
    run_backward(model, default_input(model))
    assert torch.equal(torch.rand(3), expected)
    for name, values in before[1]:
        assert torch.equal(dict(model.named_buffers())[name], values), name
    assert [(n, m.training) for n, m in model.named_modules()] == before[2]


def test_lazy_model_materializes_and_says_so():
    model = build_demo("lazy")
    result = run_backward(model, "rand(2, 4)")
    assert result.structure_changed
    assert result.parameters["0.weight"].shape == (8, 4)


# --- losses and outputs --------------------------------------------------------------------------

Pair = namedtuple("Pair", "scores extra")


class Structured(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        y = self.fc(x)
        return Pair(y, {"doubled": 2 * y, "ids": y.argmax(-1)})


def test_structured_outputs_reduce_over_their_float_leaves():
    model = Structured()
    x = torch.rand(2, 3)
    result = run_backward(model, x, "sum")
    with torch.no_grad():
        y = model.fc(x)
    assert result.loss == pytest.approx(float(y.sum() + (2 * y).sum()), rel=1e-6)
    paths = [leaf.path for leaf in result.output.leaves]
    assert paths == ["[0]", "[1]['doubled']", "[1]['ids']"]
    assert any("integer outputs left out" in note for note in result.notes)
    assert "leaves" in result.output.to_dict()


def test_cross_entropy_on_class_scores_and_sequences():
    for demo in ("cnn", "lstm"):
        model = build_demo(demo)
        result = run_backward(model, default_input(model), "cross_entropy")
        assert result.loss > 0


def test_losses_mean_and_l2():
    out = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    assert compute_loss(out, "mean").item() == 1.5
    assert compute_loss(out, "l2").item() == 30.0
    assert compute_loss(out, "squared_l2").item() == 30.0
    with pytest.raises(LossError, match="unknown loss"):
        compute_loss(out, "hinge")
    with pytest.raises(LossError, match="no floating-point tensor"):
        compute_loss(torch.tensor([1, 2]), "sum")
    with pytest.raises(LossError, match=r"\(N, C\) or \(N, T, C\)"):
        compute_loss(torch.rand(2, 3, 4, 5), "cross_entropy")


def test_cross_entropy_labels_are_seeded():
    out = torch.randn(4, 3)
    assert (
        compute_loss(out, "cross_entropy", seed=1).item()
        == compute_loss(out, "cross_entropy", seed=1).item()
    )


# --- signal propagation --------------------------------------------------------------------------


def _deep_mlp_final_std(init: str) -> tuple[float, list]:
    model = build_demo("deep_mlp")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear) and init != "default":
                if init == "normal":
                    nn.init.normal_(module.weight, std=0.01)
                else:
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
    result = run_backward(model, default_input(model), "sum")
    return result.signal[-1].activation_std, result.signal


def test_signal_propagation_orders_the_initializers():
    normal, signal = _deep_mlp_final_std("normal")
    default, _ = _deep_mlp_final_std("default")
    kaiming, _ = _deep_mlp_final_std("kaiming")
    assert normal < default / 1000  # normal(0.01) makes the signal vanish through 20 layers
    assert default < kaiming
    assert len(signal) == 39 and signal[0].module == "0" and signal[1].type_name == "ReLU"
    assert all(p.gradient_std is not None for p in signal)


def test_worker_entry_point_runs_a_request():
    model = build_demo("shared")
    result = run(BackwardRequest(model, "ones(1, 1)"), TaskState())
    assert result.output.value is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_backward_on_the_gpu_matches_the_cpu():
    cpu = build_demo("mlp")
    gpu = build_demo("mlp").cuda()
    run_backward(cpu, "rand(2, 4)")
    result = run_backward(gpu, "rand(2, 4)")
    assert gpu[0].weight.grad.device.type == "cuda"
    assert torch.allclose(gpu[0].weight.grad.cpu(), cpu[0].weight.grad, atol=1e-6)
    assert result.parameters["0.weight"].grad.norm == pytest.approx(
        float(cpu[0].weight.grad.norm()), rel=1e-5
    )
    shared = build_demo("shared").cuda()
    nn.init.constant_(shared[0].weight, 3.0)
    result = run_backward(shared, "ones(1, 1)")
    assert [p.values.item() for p in result.parameters["0.weight"].parts] == [3.0, 3.0]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_modules_run_without_hooks_and_say_so():
    scripted = torch.jit.script(build_demo("mlp"))
    result = run_backward(scripted, "rand(2, 4)")
    assert all(p.grad is not None for p in scripted.parameters())
    assert any("takes no forward hooks" in note for note in result.notes)


class WrapsModel(nn.Module):
    """A wrapper whose inner module is called ``model`` (as in every HF ``...ForCausalLM``)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Linear(4, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.model(x))


@pytest.mark.parametrize("wrap", [lambda m: m, lambda m: OpenedModel(m, "x", "python")])
def test_a_model_with_a_model_attribute_runs_whole(wrap) -> None:
    torch.manual_seed(0)
    net = WrapsModel()
    result = run_backward(wrap(net), "ones(1, 4)")
    assert result.output.leaves[0].shape == (1, 2)
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    zero_grad(net)
    expected = plain_pytorch_grads(net, default_input(net).parse("ones(1, 4)"))
    assert set(result.parameters) == set(expected) == {"model.weight", "model.bias", "head.weight", "head.bias"}
    for name, grad in expected.items():
        assert torch.equal(grads[name], grad), name
    assert result.loss == float(net(torch.ones(1, 4)).sum().detach())
