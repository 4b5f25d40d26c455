"""The Initialize request without Qt: state fields and their listeners, targets, plan, seed, edits."""

from __future__ import annotations

import pytest
import torch

from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.rules import build_commands
from paramscope.core.observable import Field, State
from paramscope.core.sources.sources import open_source
from paramscope.core.state.init_state import (
    CUSTOM,
    NO_TARGETS,
    RULE,
    SELECTED_MODULE,
    SELECTED_TENSOR,
    InitState,
    ValueEditState,
    default_params,
)


def _session(spec: str = "demo:mlp") -> Session:
    return Session(open_source(spec))


def test_a_field_tells_its_listeners_once_per_new_value() -> None:
    class Form(State):
        seed = Field("")
        args: Field[dict] = Field(default_factory=dict)

    form, heard = Form(), []
    form.add_listener(lambda name, value: heard.append((name, value)))
    form.seed = "7"
    form.seed = "7"  # the same value: no news
    form.args = {"std": 0.1}
    form.args = {"std": 0.1}
    form.args = {"std": float("nan")}
    form.args = {"std": float("nan")}  # NaN is the same as NaN
    assert [name for name, _ in heard] == ["seed", "args", "args"]
    assert heard[0][1] == "7" and heard[1][1] == {"std": 0.1}
    assert Form().args is not form.args  # each state its own dict
    with pytest.raises(TypeError, match="no field"):
        Form(bogus=1)


def test_choosing_an_initializer_resets_its_arguments_to_the_defaults() -> None:
    state = InitState()
    assert state.initializer == "normal_" and state.params == {"mean": 0.0, "std": 1.0}
    state.set_param("std", 0.01)
    state.initializer = "kaiming_normal_"
    assert state.params == {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"}
    state.initializer = "constant_"  # a required argument: an empty number, as the form shows
    assert state.params == {"val": 0.0} == default_params("constant_")
    with pytest.raises(ParamscopeError, match="no argument 'std'"):
        state.set_param("std", 1.0)
    state.initializer = CUSTOM
    assert state.params == {} and state.kwargs() == {}


def test_targets_follow_the_mode_and_the_sessions_selection() -> None:
    session = _session()
    state = InitState()
    assert state.target_mode == SELECTED_TENSOR and state.target_names(session) == []
    session.select_tensor("2.weight")
    assert state.target_names(session) == ["2.weight"]
    state.target_mode = SELECTED_MODULE
    session.select_module("0")
    assert state.target_names(session) == ["0.weight", "0.bias"]
    state.target_mode = RULE
    state.rule_text = "2.*"
    assert state.target_names(session) == ["2.weight", "2.bias"]
    state.rule_text = "re:("
    with pytest.raises(ParamscopeError, match="bad regular expression"):
        state.target_names(session)


def test_weights_and_biases_boxes_use_the_local_name_as_the_rules_do() -> None:
    session = _session("demo:lstm")
    state = InitState(target_mode=RULE, rule_text="lstm.*")
    state.weights = False
    # 'bias' in the local name: lstm.bias_ih_l0 is a bias although it does not end in ".bias"
    assert state.target_names(session) == ["lstm.bias_ih_l0", "lstm.bias_hh_l0", "lstm.bias_ih_l1", "lstm.bias_hh_l1"]
    state.weights, state.biases = True, False
    assert state.target_names(session) == ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1"]
    state.weights = False
    assert state.target_names(session) == []


def test_plan_lines_list_targets_refusals_and_errors() -> None:
    session = _session()
    state = InitState(target_mode=SELECTED_MODULE)
    session.select_module("0")
    state.initializer = "xavier_uniform_"
    lines = state.plan_lines(session)
    assert lines[0].startswith("0.weight") and any("REFUSED" in line and "0.bias" in line for line in lines)
    state.target_mode = SELECTED_TENSOR
    assert state.plan_lines(session) == [NO_TARGETS]
    state.target_mode, state.rule_text = RULE, "re:("
    assert "bad regular expression" in state.plan_lines(session)[0]


def test_the_rule_is_what_a_script_would_build_and_custom_code_runs_once_per_text() -> None:
    session = _session()
    state = InitState(target_mode=RULE, rule_text="*.weight", initializer="normal_")
    state.set_param("std", 0.02)
    rule = state.rule(session)
    assert rule.selector.names == ("0.weight", "2.weight") and dict(rule.kwargs) == {"mean": 0.0, "std": 0.02}
    state.initializer = CUSTOM
    state.custom_source = "def mine(t):\n    return torch.nn.init.zeros_(t)\n"
    state.custom_function = ""
    first = state.initializer_object()
    assert state.initializer_object() is first  # not run again for the same text
    state.custom_source += "\n"
    assert state.initializer_object() is not first
    state.custom_source = "def broken(:\n"
    with pytest.raises(ParamscopeError, match="line 1"):
        state.rule(session)


def test_seed_typed_or_the_previewed_one_for_the_same_rule_only() -> None:
    state = InitState()
    assert state.seed("init a") is None
    state.remember_preview("init a", 99)
    assert state.seed("init a") == 99 and state.seed("init b") is None
    state.seed_text = " 5 "
    assert state.seed("init a") == 5
    state.seed_text = "x1"
    with pytest.raises(ParamscopeError, match="whole number"):
        state.seed("init a")
    state.seed_text = ""
    state.forget_preview()
    assert state.seed("init a") is None


def test_request_key_changes_with_any_field() -> None:
    state = InitState()
    key = state.request_key()
    assert InitState().request_key() == key
    state.set_param("std", 2.0)
    assert state.request_key() != key
    changed = state.request_key()
    state.skip_refused = True
    assert state.request_key() != changed


def test_apply_through_the_state_writes_what_build_commands_writes() -> None:
    session, reference = _session(), _session()
    state = InitState(target_mode=RULE, rule_text="*.weight", seed_text="3")
    state.set_param("std", 0.5)
    rule = state.rule(session)
    _, (command,) = build_commands(session, [rule], state.seed(rule.text), state.skip_refused)
    session.execute(command)
    _, (expected,) = build_commands(reference, ["*.weight=normal(mean=0, std=0.5)"], seed=3)
    reference.execute(expected)
    for name in ("0.weight", "2.weight"):
        assert torch.equal(session.tensor(name), reference.tensor(name))


def test_value_edit_state_reads_only_the_fields_its_kind_uses() -> None:
    session = _session()
    before = session.tensor("0.bias").detach().clone()
    edit = ValueEditState()
    assert edit.kind == "add" and edit.uses() == {"value": True, "low": False, "high": False, "expression": False}
    edit.kind, edit.low, edit.high = "clamp", -0.01, 0.01
    assert edit.uses()["low"] and not edit.uses()["value"]
    session.execute(edit.command(session, ["0.bias"]))
    assert torch.equal(session.tensor("0.bias").detach(), before.clamp(-0.01, 0.01))
    edit.kind, edit.expression = "expression", "__import__('os')"
    with pytest.raises(ParamscopeError):
        edit.command(session, ["0.bias"])
