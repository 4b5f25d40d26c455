"""Parsing init rules and resolving their targets."""

from __future__ import annotations

import re

import pytest
import torch

from paramscope.core.edit.session import Session
from paramscope.core.errors import RuleError
from paramscope.core.init.rule_parse import parse_rule
from paramscope.core.init.rule_plans import plan
from paramscope.core.init.selectors import Selector, parse_selector, resolve_targets
from paramscope.core.model.report import build_report
from paramscope.core.sources.sources import open_source


def report_of(spec: str):
    model = open_source(spec).model
    return build_report(model), model


@pytest.mark.parametrize(
    ("text", "selector", "init", "kwargs"),
    [
        ("*.weight=normal(mean=0,std=0.01)", Selector("glob", "*.weight"), "normal", {"mean": 0, "std": 0.01}),
        ("*.bias=constant(val=0)", Selector("glob", "*.bias"), "constant", {"val": 0}),
        ("*.bias=constant(0)", Selector("glob", "*.bias"), "constant", {"val": 0}),
        ("*=default", Selector("glob", "*"), "default", {}),
        (r"re:^0\.=xavier_uniform(gain=1.0)", Selector("regex", r"^0\."), "xavier_uniform", {"gain": 1.0}),
        ("re:a=b=normal_()", Selector("regex", "a=b"), "normal_", {}),
        ("type:Linear=kaiming_normal_(mode='fan_out', nonlinearity=relu)", Selector("type", "Linear"),
         "kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),  # fmt: skip
        ("weights = trunc_normal(std=-1e-2, a=-2, b=2)", Selector("weights"), "trunc_normal",
         {"std": -0.01, "a": -2, "b": 2}),  # fmt: skip
        ("*.weight=my_init.py:init_weight_", Selector("glob", "*.weight"), "my_init.py:init_weight_", {}),
        ("*.weight=pkg.mod:f(low=5, flag=True)", Selector("glob", "*.weight"), "pkg.mod:f", {"low": 5, "flag": True}),
    ],
)
def test_parse_rule(text, selector, init, kwargs):
    rule = parse_rule(text)
    assert rule.selector == selector
    assert rule.init == init
    assert dict(rule.kwargs) == kwargs
    assert rule.text == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("*.weight", "expected SELECTOR=INIT"),
        ("=normal", "expected SELECTOR=INIT"),
        ("*.weight=gaussian(std=1)", "unknown initializer 'gaussian'"),
        ("*.weight=normal(sd=1)", "has no argument 'sd'"),
        ("*.weight=normal(std='big')", "std must be a number"),
        ("*.weight=normal(std=__import__('os').getpid())", "is not a number, string or boolean"),
        ("*.weight=normal(std=1+1)", "is not a number, string or boolean"),
        ("*.weight=normal(std=[1])", "is not a number, string or boolean"),
        ("*=my.py:f(shape=(2, 3))", "is not a number, string or boolean"),
        ("*=my.py:f(options={'a': 1})", "is not a number, string or boolean"),
        ("*.weight=normal(std=1", "expected SELECTOR=INIT"),
        ("*.weight=normal(std=1,,)", "cannot read the arguments"),
        ("*.weight=kaiming_normal(mode=fan_sideways)", "mode must be one of fan_in, fan_out"),
        ("*.weight=dirac(groups=1.5)", "groups must be an integer"),
        ("*.weight=constant()", "constant_ needs val"),
        ("*.weight=normal(1, 2, 3)", "takes at most 2 arguments"),
        ("re:([=normal", "bad regular expression"),
        ("type:not a type=normal", "a module type is a class name"),
        ("*=my.py:f(3)", "as key=value"),
    ],
)
def test_bad_rules_give_one_line_errors_naming_the_rule(text, message):
    with pytest.raises(RuleError) as caught:
        parse_rule(text)
    text_of_error = str(caught.value)
    assert message in text_of_error
    assert "\n" not in text_of_error
    assert "rule" in text_of_error


def test_glob_regex_type_and_keywords_on_the_tutorial_mlp():
    report, model = report_of("demo:mlp")
    assert resolve_targets(report, "*.weight") == ["0.weight", "2.weight"]
    assert resolve_targets(report, "0.*") == ["0.weight", "0.bias"]
    assert resolve_targets(report, "*") == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert resolve_targets(report, r"re:^2\.") == ["2.weight", "2.bias"]
    assert resolve_targets(report, "type:Linear") == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert resolve_targets(report, "type:ReLU") == []
    assert resolve_targets(report, parse_selector("weights")) == ["0.weight", "2.weight"]
    assert resolve_targets(report, parse_selector("biases")) == ["0.bias", "2.bias"]


def test_globs_match_whole_names_where_a_prefix_match_would_differ():
    """On an LSTM, ``*.bias`` is the Linear's bias only: ``lstm.bias_ih_l0`` merely starts so."""
    report, _ = report_of("demo:lstm")
    assert resolve_targets(report, "*.bias") == ["tag.bias"]
    assert resolve_targets(report, "*.weight") == ["embed.weight", "tag.weight"]
    assert resolve_targets(report, "lstm.bias") == []  # no prefix match
    assert resolve_targets(report, "lstm.weight_ih") == []
    assert resolve_targets(report, "*.BIAS") == []  # case matters
    assert resolve_targets(report, "*bias*") == [
        "lstm.bias_ih_l0", "lstm.bias_hh_l0", "lstm.bias_ih_l1", "lstm.bias_hh_l1", "tag.bias",
    ]  # fmt: skip
    assert resolve_targets(report, "lstm.*_l1") == [
        "lstm.weight_ih_l1", "lstm.weight_hh_l1", "lstm.bias_ih_l1", "lstm.bias_hh_l1",
    ]  # fmt: skip
    assert resolve_targets(report, "lstm.bias_?h_l0") == ["lstm.bias_ih_l0", "lstm.bias_hh_l0"]
    # the keywords look at the last part of the name: every kind of bias or weight
    assert resolve_targets(report, parse_selector("biases")) == resolve_targets(report, "*bias*")
    assert "lstm.weight_hh_l1" in resolve_targets(report, parse_selector("weights"))


def test_a_regex_is_searched_and_anchors_are_the_users():
    report, _ = report_of("demo:lstm")
    assert resolve_targets(report, "re:bias_ih") == ["lstm.bias_ih_l0", "lstm.bias_ih_l1"]
    assert resolve_targets(report, "re:^bias") == []
    assert resolve_targets(report, r"re:\.bias$") == ["tag.bias"]
    assert resolve_targets(report, "re:l0$") == [
        "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
    ]  # fmt: skip
    assert resolve_targets(report, "re:^lstm.weight_.h_l1$") == ["lstm.weight_ih_l1", "lstm.weight_hh_l1"]


def test_type_selector_matches_subclasses_when_the_model_is_given():
    report, model = report_of("demo:tiny_lm")
    # MultiheadAttention's out_proj is a NonDynamicallyQuantizableLinear, a Linear subclass
    with_model = resolve_targets(report, "type:Linear", model)
    assert "blocks.layers.0.self_attn.out_proj.weight" in with_model
    assert "blocks.layers.0.self_attn.out_proj.weight" not in resolve_targets(report, "type:Linear")


@pytest.mark.parametrize("spec", ["demo:tiny_lm", "demo:shared", "demo:cnn", "demo:lstm", "demo:deep_mlp"])
@pytest.mark.parametrize("pattern", ["Linear", "*Norm*", "Module", "Conv*", "Sequential", "LSTM"])
def test_type_selector_hits_what_fetching_each_tensors_module_hits(spec: str, pattern: str):
    """``type:`` selectors match each module once (a preset's rules fetched every tensor's module
    by name: 6 s on 94,000 tensors); the hits are those of the plain per-tensor lookup."""
    import fnmatch

    report, model = report_of(spec)

    def owner_matches(alias: str) -> bool:
        module = model.get_submodule(alias.rpartition(".")[0])
        return any(fnmatch.fnmatchcase(cls.__name__, pattern) for cls in type(module).__mro__)

    expected = [i.name for i in report.parameters.values() if any(owner_matches(a) for a in i.aliases)]
    assert resolve_targets(report, f"type:{pattern}", model) == expected
    buffers = [i.name for i in report.buffers.values() if any(owner_matches(a) for a in i.aliases)]
    assert resolve_targets(report, f"type:{pattern}", model, include_buffers=True) == expected + buffers


def test_tied_parameter_hit_through_either_alias_is_one_canonical_target():
    report, model = report_of("demo:tiny_lm")
    assert resolve_targets(report, "head.weight") == ["embed.weight"]
    assert resolve_targets(report, "embed.weight") == ["embed.weight"]
    session = Session(open_source("demo:tiny_lm"))
    described = plan(session, ["head.*=normal(std=0.02)"]).describe()
    assert "head.weight (= embed.weight)" in described and "also changes embed.weight" in described


def test_glob_does_not_hit_buffers_but_names_may():
    report, _ = report_of("demo:cnn")
    assert not any("running" in n for n in resolve_targets(report, "*"))
    assert resolve_targets(report, Selector.of_names(["features.1.running_var"])) == ["features.1.running_var"]
    with pytest.raises(RuleError, match="no tensor named 'nope'"):
        resolve_targets(report, Selector.of_names(["nope"]))


def test_a_rule_that_hits_nothing_says_so():
    session = Session(open_source("demo:mlp"))
    assert "hits nothing" in plan(session, ["*.gamma=ones"]).describe()


def test_preview_of_default_on_a_module_that_cannot_be_copied_is_a_clear_error():
    import torch
    from torch import nn

    from paramscope.core.edit.session import Session
    from paramscope.core.errors import RuleError
    from paramscope.core.init.rules import preview_rules
    from paramscope.core.sources.sources import OpenedModel

    net = nn.Sequential(nn.Linear(2, 2))
    net[0].cache = net[0](torch.ones(1, 2))  # an activation with a grad_fn: deepcopy refuses it
    session = Session(OpenedModel(net, "live", "live"))
    with pytest.raises(RuleError, match="cannot preview reset_parameters"):
        preview_rules(session, ["0.weight=default"], seed=0)


# --- rules that hit nothing ---------------------------------------------------------------


@pytest.mark.parametrize("rules", [["type:Conv2d=normal(std=0.02)"], ["*.wieght=normal(std=0.02)", "*.bias=zeros"]])
@pytest.mark.parametrize("skip", [False, True])
def test_a_rule_that_hits_nothing_is_an_error_naming_it(rules, skip) -> None:
    from paramscope.core.init.rule_plans import UnmatchedRuleError, UnmatchedRuleWarning
    from paramscope.core.init.rules import apply_rules, preview_rules

    session = Session(open_source("demo:mlp"))
    before = {n: t.clone() for n, t in session.model.state_dict().items()}
    if skip and len(rules) > 1:  # asked to skip: a warning, and the valid rule applies
        with pytest.warns(UnmatchedRuleWarning, match=r"rule '\*\.wieght=normal\(std=0\.02\)' hits nothing"):
            apply_rules(session, rules, seed=0, skip_refused=True)
        assert torch.count_nonzero(session.model.state_dict()["0.bias"]) == 0
        return
    for call in (apply_rules, preview_rules):
        with pytest.raises(UnmatchedRuleError, match=re.escape(f"rule {rules[0]!r} hits nothing")) as info:
            call(session, rules, seed=0, skip_refused=skip)
        assert "\n" not in str(info.value)
    assert all(torch.equal(t, before[n]) for n, t in session.model.state_dict().items())


def test_unmatched_type_rule_lists_the_types_there_are() -> None:
    from paramscope.core.init.rule_plans import UnmatchedRuleError, check_unmatched

    session = Session(open_source("demo:mlp"))
    with pytest.raises(UnmatchedRuleError, match=r"no module of type Conv2d owns a parameter \(types with parameters: Linear\)"):
        check_unmatched(plan(session, ["type:Conv2d=normal(std=0.02)"]), session.report)
    assert check_unmatched(plan(session, ["type:Linear=normal(std=0.02)"]), session.report) == []


def test_weights_and_biases_narrow_names_as_the_keyword_selectors_do() -> None:
    """The Initialize panel's two boxes: ``in_proj_bias`` is a bias, ``pos`` is neither."""
    from paramscope.core.init.selectors import weights_and_biases

    report, _ = report_of("demo:tiny_lm")
    names = ["pos", "embed.weight", "blocks.layers.0.self_attn.in_proj_weight",
             "blocks.layers.0.self_attn.in_proj_bias", "blocks.layers.0.linear1.bias"]  # fmt: skip
    assert weights_and_biases(report, names) == names
    assert weights_and_biases(report, names, weights=False, biases=False) == []
    assert weights_and_biases(report, names, biases=False) == names[1:3]
    assert weights_and_biases(report, names, weights=False) == names[3:]
    assert weights_and_biases(report, names, biases=False) == [
        n for n in names if n in resolve_targets(report, parse_selector("weights"))
    ]
    shared, _ = report_of("demo:shared")  # one tensor, two names: any alias counts
    assert weights_and_biases(shared, ["0.weight"], biases=False) == ["0.weight"]


def test_the_keyword_selectors_look_at_the_local_name_only() -> None:
    """``weights`` hits ``weightnet.weight`` but not ``weightnet.bias``: the module's name is not the tensor's."""
    model = torch.nn.ModuleDict({"weightnet": torch.nn.Linear(2, 2), "biasnet": torch.nn.Linear(2, 2)})
    report = build_report(model)
    assert resolve_targets(report, parse_selector("weights"), model) == ["weightnet.weight", "biasnet.weight"]
    assert resolve_targets(report, parse_selector("biases"), model) == ["weightnet.bias", "biasnet.bias"]
