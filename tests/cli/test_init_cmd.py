"""``paramscope init``: rules from the command line, written as a state_dict."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from torch.nn import init

from paramscope.cli import main
from paramscope.core.sources.sources import open_source
from paramscope.resources import resource_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["init", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_issue_example_normal_weights_constant_biases(tmp_path, capsys):
    out = tmp_path / "out.pt"
    code, stdout, _ = run(capsys, "demo:mlp", "--rule", "*.weight=normal(mean=0,std=0.01)",
                          "--rule", "*.bias=constant(val=0)", "--seed", "7", "-o", str(out))  # fmt: skip
    assert code == 0
    assert "*.weight=normal(mean=0,std=0.01): 2 tensor(s)" in stdout and "  0.weight" in stdout
    state = torch.load(out, weights_only=True)
    expected_w0 = torch.empty(3, 4)
    generator = torch.Generator().manual_seed(7)
    init.normal_(expected_w0, 0.0, 0.01, generator=generator)
    assert torch.equal(state["0.weight"], expected_w0)
    assert torch.count_nonzero(state["0.bias"]) == 0 and torch.count_nonzero(state["2.bias"]) == 0


def test_default_rule_with_seed_is_repeatable_and_safetensors_works(tmp_path, capsys):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.pt"
    assert run(capsys, "demo:mlp", "--rule", "*=default", "--seed", "3", "-o", str(first))[0] == 0
    assert run(capsys, "demo:mlp", "--rule", "*=default", "--seed", "3", "-o", str(second))[0] == 0
    from safetensors.torch import load_file

    a, b = load_file(first), torch.load(second, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in b)
    original = open_source("demo:mlp").model.state_dict()
    assert not torch.equal(a["0.weight"], original["0.weight"])


def test_regex_rule_strict_refuses_then_default_skips_biases(tmp_path, capsys):
    out = tmp_path / "out.pt"
    code, stdout, stderr = run(capsys, "demo:mlp", "--rule", r"re:^0\.=xavier_uniform(gain=1.0)", "--strict", "-o", str(out))
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("paramscope: rule ")
    assert "0.bias: xavier_uniform_ needs fan_in and fan_out" in stderr and "nothing applied" in stderr
    assert "REFUSED" in stdout
    assert not out.exists()
    code, stdout, _ = run(capsys, "demo:mlp", "--rule", r"re:^0\.=xavier_uniform(gain=1.0)",
                          "--seed", "0", "-o", str(out))  # fmt: skip
    assert code == 0 and "skipped 1 refused tensor(s): 0.bias" in stdout
    state = torch.load(out, weights_only=True)
    expected = torch.empty(3, 4)
    init.xavier_uniform_(expected, gain=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(state["0.weight"], expected)
    assert torch.equal(state["0.bias"], open_source("demo:mlp").model.state_dict()["0.bias"])


def test_custom_initializer_file_in_the_working_directory(tmp_path):
    shutil.copy(resource_path("examples/init_weight.py"), tmp_path / "my_init.py")
    done = subprocess.run(
        [sys.executable, "-m", "paramscope", "init", "demo:shared", "--rule", "*.weight=my_init.py:init_weight_",
         "--seed", "1", "-o", "out.pt"],  # fmt: skip
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "tied: also changes 1.weight" in done.stdout
    state = torch.load(tmp_path / "out.pt", weights_only=True)
    value = state["0.weight"].abs()
    assert bool(((value == 0) | ((value >= 5) & (value <= 10))).all())
    assert torch.equal(state["0.weight"], state["1.weight"])


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("*.weight=gaussian()", "rule '*.weight=gaussian()': unknown initializer 'gaussian'"),
        ("*.weight=normal(sd=1)", "rule '*.weight=normal(sd=1)': normal_ has no argument 'sd'"),
        ("*.weight", "rule '*.weight': expected SELECTOR=INIT"),
        ("*.weight=missing.py:f", "missing.py:f: no such file"),
        ("*.weight=normal(std=__import__('os'))", "is not a number, string or boolean"),
    ],
)
def test_bad_rules_give_a_one_line_error_naming_the_rule(tmp_path, capsys, rule, message):
    out = tmp_path / "out.pt"
    code, _, stderr = run(capsys, "demo:mlp", "--rule", rule, "-o", str(out))
    assert code == 2
    assert message in stderr and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_dry_run_lists_hits_and_writes_nothing(tmp_path, capsys):
    code, stdout, _ = run(capsys, "demo:tiny_lm", "--rule", "head.weight=normal(std=0.02)", "--dry-run")
    assert code == 0
    assert "head.weight (= embed.weight)  [tied: also changes embed.weight]" in stdout
    assert list(tmp_path.iterdir()) == []


def test_missing_output_or_rule_is_an_error(capsys):
    assert run(capsys, "demo:mlp", "--rule", "*=ones")[0] == 2
    code, _, stderr = run(capsys, "demo:mlp", "-o", "x.pt")
    assert code == 2 and "--rule" in stderr


def test_script_option_writes_a_replay_that_reproduces_the_output(tmp_path, capsys):
    out, script, replayed = tmp_path / "out.pt", tmp_path / "replay.py", tmp_path / "replayed.pt"
    code, _, _ = run(capsys, "demo:mlp", "--rule", "*.weight=kaiming_normal(nonlinearity=relu)", "--rule",
                     "*=default", "--seed", "5", "-o", str(out), "--script", str(script))  # fmt: skip
    assert code == 0
    done = subprocess.run([sys.executable, str(script), str(replayed)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = torch.load(out, weights_only=True), torch.load(replayed, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("strict", [[], ["--strict"]])
@pytest.mark.parametrize(
    ("rules", "named"),
    [
        (["type:Conv2d=normal(std=0.02)"], "type:Conv2d=normal(std=0.02)"),
        (["*.wieght=normal(std=0.02)"], "*.wieght=normal(std=0.02)"),
        (["*.bias=zeros", "*.wieght=normal(std=0.02)"], "*.wieght=normal(std=0.02)"),
    ],
)
def test_a_rule_that_hits_nothing_is_a_one_line_error(tmp_path, capsys, rules, named, strict):
    args = [a for r in rules for a in ("--rule", r)]
    out = tmp_path / "out.pt"
    assert main(["init", "demo:mlp", *args, "-o", str(out), *strict]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"paramscope: rule {named!r} hits nothing") and "\n" not in err
    assert not out.exists()


def test_grad_init_rule_that_hits_nothing_is_an_error(capsys):
    assert main(["grad", "demo:mlp", "--init", "*.bias=zeros", "--init", "*.wieght=normal(std=0.02)"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "paramscope: rule '*.wieght=normal(std=0.02)' hits nothing: no parameter name matches "
        "'*.wieght' (names look like: 0.weight, 0.bias, 2.weight, 2.bias)"
    )


@pytest.mark.parametrize("kind", ["dcp", "lazy safetensors"])
def test_init_of_a_lazily_opened_checkpoint_keeps_the_other_values(tmp_path, monkeypatch, kind):
    """Edited tensors are read before the edit; the export reads every other one from the file."""
    import warnings

    from safetensors.torch import load_file, save_file

    from paramscope.core.files import regions

    torch.manual_seed(0)
    state = {"0.weight": torch.randn(3, 4), "0.bias": torch.randn(3), "1.weight": torch.randn(2, 3)}
    source = tmp_path / "ckpt"
    if kind == "dcp":
        import torch.distributed.checkpoint as dcp

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save({k: v.clone() for k, v in state.items()}, checkpoint_id=str(source), no_dist=True)
    else:
        source = tmp_path / "ckpt.safetensors"
        save_file(state, str(source))
        monkeypatch.setattr(regions, "LAZY_BYTES", 0)
    out = tmp_path / "out.safetensors"
    assert main(["init", str(source), "--rule", "0.weight=constant(val=3)", "-o", str(out)]) == 0
    written = load_file(str(out))
    assert torch.equal(written["0.weight"], torch.full((3, 4), 3.0))
    assert torch.equal(written["0.bias"], state["0.bias"])
    assert torch.equal(written["1.weight"], state["1.weight"])


def test_weight_matrices_no_rule_touches_are_named(tmp_path, capsys):
    """A mixture of experts' stacked matrices have no "weight" in their names: lsuv's
    ``weights=...`` left them at their old values, and nothing said so."""
    from small_models import tiny_mixtral

    tiny_mixtral().save_pretrained(tmp_path / "mixtral")
    assert main(["init", str(tmp_path / "mixtral"), "--preset", "lsuv", "--dry-run"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("not touched by any rule"))
    assert line.endswith("2 weight matrix(es): model.layers.0.mlp.experts.gate_up_proj, model.layers.0.mlp.experts.down_proj")
    assert main(["init", str(tmp_path / "mixtral"), "--preset", "gpt2", "--dry-run"]) == 0
    assert "not touched by any rule" not in capsys.readouterr().out  # gpt2 draws the experts too
    assert main(["init", "demo:mlp", "--rule", "0.weight=zeros", "--rule", "*.bias=zeros", "--dry-run"]) == 0
    assert "keeping their values: 1 weight matrix(es): 2.weight" in capsys.readouterr().out
