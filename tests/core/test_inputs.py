"""Input specs: parsing (never eval), seeded generation, .pt files, defaults from the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paramscope.core.backward.input_specs import InputSpecError, parse_input_spec
from paramscope.core.backward.inputs import default_input
from paramscope.core.sources.demos import build_demo


def test_rand_matches_the_tutorial_torch_rand_with_the_same_seed():
    (x,) = parse_input_spec("rand(2, 4)").make(seed=0)
    torch.manual_seed(0)
    assert torch.equal(x, torch.rand(2, 4))


def test_generation_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    parse_input_spec("randn(5, 5); rand(2)").make(seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_same_seed_same_tensors_other_seed_other_tensors():
    spec = parse_input_spec("randn(3, 4)")
    assert torch.equal(spec.make(seed=1)[0], spec.make(seed=1)[0])
    assert not torch.equal(spec.make(seed=1)[0], spec.make(seed=2)[0])


def test_every_kind_with_dtype_and_tuple_of_inputs():
    spec = parse_input_spec("ones(1, 1); zeros(3, dtype=float64); randint(2, 16, high=100); randn(2)")
    a, b, c, d = spec.make(seed=0)
    assert a.tolist() == [[1.0]] and a.dtype == torch.float32
    assert b.dtype == torch.float64 and b.tolist() == [0.0, 0.0, 0.0]
    assert c.shape == (2, 16) and c.dtype == torch.int64 and int(c.min()) >= 0 and int(c.max()) < 100
    assert d.shape == (2,)
    assert spec.text == "ones(1, 1); zeros(3, dtype=float64); randint(2, 16, high=100); randn(2)"


def test_randint_low_and_round_trip_text():
    spec = parse_input_spec("randint(4, 5, low=10, high=12)")
    (ids,) = spec.make(seed=3)
    assert set(ids.unique().tolist()) <= {10, 11}
    assert parse_input_spec(spec.text) == spec


def test_float_dtype_follows_the_model_unless_given():
    spec = parse_input_spec("rand(2, 2); rand(2, dtype=float32); randint(2, high=3)")
    a, b, c = spec.make(seed=0, float_dtype=torch.float64)
    assert (a.dtype, b.dtype, c.dtype) == (torch.float64, torch.float32, torch.int64)


def test_inputs_made_for_a_model_take_its_first_float_dtype() -> None:
    """A model that casts down after its first layer takes inputs in the first layer's dtype."""
    from paramscope.core.backward.inputs import make_call_inputs, model_placement

    class CastsDown(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = torch.nn.Linear(2, 2).double()
            self.rest = torch.nn.Linear(2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rest(self.first(x).float())

    model = CastsDown()
    assert model_placement(model) == (torch.device("cpu"), torch.float64)
    (x,), _, text = make_call_inputs(model, "rand(2, 2)", 0)
    assert x.dtype == torch.float64 and text == "rand(2, 2)"
    model(x).sum().backward()  # the spec made what the model takes


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty input spec"),
        ("rand(2, 4", "expected rand"),
        ("__import__('os').system('x')", "unknown function"),
        ("rand(2, x)", "a size must be an integer"),
        ("rand(2, -1)", "negative size"),
        ("rand(2, 2.5)", "a size must be an integer"),
        ("randint(2, 3)", "randint needs high=N"),
        ("randint(2, high=0)", "must be greater than low"),
        ("randint(2, high=5, dtype=float32)", "is floating"),
        ("rand(2, dtype=int64)", "needs a floating dtype"),
        ("rand(2, dtype=complex999)", "unknown dtype"),
        ("rand(2, high=3)", "only apply to randint"),
        ("rand(2, mean=3)", "unknown keyword"),
        ("rand(dtype=float64, 2)", "sizes must come before keywords"),
        ("rand(2);;ones(1)", "empty input between"),
        ("rand(100000, 100000)", "too large"),
    ],
)
def test_bad_specs_give_one_line_errors(text, fragment):
    with pytest.raises(InputSpecError) as info:
        parse_input_spec(text).make(seed=0)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_pt_file_with_a_tensor_or_a_tuple(tmp_path):
    single, pair = tmp_path / "x.pt", tmp_path / "xy.pt"
    torch.save(torch.arange(6.0).reshape(2, 3), single)
    torch.save((torch.ones(2), torch.zeros(1, dtype=torch.int64)), pair)
    (x,) = parse_input_spec(str(single)).make()
    assert x.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    tensors = parse_input_spec(f"{pair}; ones(1)").make()
    assert [tuple(t.shape) for t in tensors] == [(2,), (1,), (1,)]


def test_pt_file_errors_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a pickle at all")
    holds_dict = tmp_path / "dict.pt"
    torch.save({"a": torch.ones(1)}, holds_dict)
    for path, fragment in [
        (tmp_path / "missing.pt", "no such input file"),
        (garbage, "not a tensor file torch can load safely"),
        (holds_dict, "holds dict, expected a tensor or a tuple of tensors"),
    ]:
        with pytest.raises(InputSpecError) as info:
            parse_input_spec(str(path)).make()
        assert str(path) in str(info.value) and fragment in str(info.value)
        assert "weights_only=False" not in str(info.value)


@pytest.mark.parametrize(
    ("demo", "expected"),
    [
        ("mlp", "rand(2, 4)"),
        ("unregistered", "rand(2, 20)"),
        ("shared", "rand(2, 1)"),
        ("cnn", "rand(2, 3, 16, 16)"),
        ("tiny_lm", "randint(2, 8, high=100)"),
        ("lstm", "randint(2, 8, high=50)"),
        ("lazy", "rand(2, 4)"),
        ("deep_mlp", "rand(2, 64)"),
    ],
)
def test_default_input_of_each_demo_runs_its_forward(demo, expected):
    model = build_demo(demo)
    spec = default_input(model)
    assert spec.text == expected
    output = model(*spec.make(seed=0))
    assert isinstance(output, torch.Tensor)


def test_lazy_default_says_it_is_a_guess():
    assert "guess" in (default_input(build_demo("lazy")).note or "")


@pytest.mark.parametrize(
    ("first", "shape"),
    [
        (nn.Conv1d(3, 4, 3), (2, 3, 16)),
        (nn.Conv2d(5, 4, 3), (2, 5, 16, 16)),
        (nn.LSTM(7, 4, batch_first=True), (2, 5, 7)),
        (nn.GRU(6, 4), (5, 2, 6)),
        (nn.RNN(3, 4, batch_first=True), (2, 5, 3)),
    ],
)
def test_default_input_for_convolutions_and_recurrent_layers(first, shape):
    model = nn.Sequential(first)
    (x,) = default_input(model).make(seed=0)
    assert tuple(x.shape) == shape
    model(x)  # the guess fits the layer


# --- keyword inputs, float8 models, architectures that take several inputs --------------------


def test_keyword_inputs_parse_round_trip_and_reach_forward_as_keywords():
    from paramscope.core.backward.backward import run_backward

    spec = parse_input_spec("rand(2, 3); scale=ones(1, dtype=float64)")
    assert spec.keywords == (None, "scale") and spec.text == "rand(2, 3); scale=ones(1, dtype=float64)"
    assert parse_input_spec(spec.text) == spec

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.full((3,), 2.0))

        def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> torch.Tensor:
            return x * self.w * scale.float()

    result = run_backward(Scaled(), "ones(2, 3); scale=ones(1, dtype=float64)")
    assert result.loss == 12.0 and result.output.leaves[0].shape == (2, 3)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x=rand(2); rand(3)", "positional input 'rand(3)' after a keyword input"),
        ("x=rand(1); x=rand(2)", "keyword 'x' given twice"),
        ("x=", "keyword 'x' has no value"),
    ],
)
def test_bad_keyword_specs_are_one_line_errors(text, fragment):
    with pytest.raises(InputSpecError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_input_spec(text)


def test_a_float8_model_gets_float32_inputs_and_fails_like_torch_in_forward():
    from paramscope.core.backward.backward import run_backward
    from paramscope.core.backward.backward_errors import ForwardError

    model = nn.Sequential(nn.Linear(4, 3)).to(torch.float8_e4m3fn)
    (x,) = default_input(model).make(0, float_dtype=torch.float8_e4m3fn)
    assert x.dtype == torch.float32
    with pytest.raises(ForwardError, match=r"forward failed in 0 \(Linear\)"):
        run_backward(model, default_input(model))


def _runs(model: nn.Module) -> tuple[str, str | None, float]:
    """Default spec, its note, and the loss both paramscope and plain torch give on it."""
    from paramscope.core.backward.backward import run_backward

    spec = default_input(model)
    result = run_backward(model, spec, record_signal=False)
    args, kwargs = spec.make_call(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        output = model(*args, **kwargs)
    outputs = output if isinstance(output, tuple) else (output,)
    expected = sum(float(o.detach().double().sum()) for o in outputs if isinstance(o, torch.Tensor))
    assert result.loss == pytest.approx(expected, rel=1e-5, abs=1e-5)
    return spec.text, spec.note, result.loss


def test_default_inputs_for_attention_and_transformers():
    torch.manual_seed(0)
    assert _runs(nn.MultiheadAttention(8, 2).eval())[:2] == (
        "rand(5, 2, 8); rand(5, 2, 8); rand(5, 2, 8)", "query, key and value sequences"
    )
    assert _runs(nn.MultiheadAttention(8, 2, batch_first=True, kdim=4, vdim=6).eval())[0] == (
        "rand(2, 5, 8); rand(2, 5, 4); rand(2, 5, 6)"
    )
    transformer = nn.Transformer(8, 2, 1, 1, 16, dropout=0.0)
    assert _runs(transformer)[0] == "rand(5, 2, 8); rand(5, 2, 8)"
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 1)
    assert _runs(encoder)[:2] == ("rand(2, 5, 8)", "one sequence of 8 features for layers.0.self_attn (self-attention)")
    assert _runs(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0))[0] == "rand(5, 2, 8); rand(5, 2, 8)"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_default_inputs_for_torchscript_and_exported_programs(tmp_path):
    from paramscope.core.sources.sources import open_source

    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    conv(torch.rand(1, 3, 8, 8))
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())).save(str(tmp_path / "conv.pt"))
    scripted = open_source(str(tmp_path / "conv.pt"), trust=True).model
    assert _runs(scripted)[:2] == ("rand(2, 3, 16, 16)", "from the TorchScript Conv2d's weight (4, 3, 3, 3)")
    torch.jit.script(nn.Sequential(nn.Embedding(9, 4))).save(str(tmp_path / "embed.pt"))
    assert default_input(open_source(str(tmp_path / "embed.pt"), trust=True).model).text == "randint(2, 8, high=9)"
    program = torch.export.export(conv, (torch.rand(1, 3, 8, 8),))
    torch.export.save(program, str(tmp_path / "conv.pt2"))
    exported = open_source(str(tmp_path / "conv.pt2"), trust=True).model
    assert _runs(exported)[:2] == (
        "rand(1, 3, 8, 8, dtype=float32)", "the shapes and dtypes the exported graph was traced with"
    )
