"""The Backward request without Qt: the suggested input, explore() inputs, and the request made."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from paramscope.core.backward.backward import run
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.sources.sources import OpenedModel, open_source
from paramscope.core.state.backward_state import EXPLORE_INPUTS, EXPLORE_NOTE, BackwardState


def test_reset_input_suggests_the_first_layers_input_and_the_request_carries_every_field() -> None:
    session = Session(open_source("demo:mlp"))
    state, heard = BackwardState(), []
    state.add_listener(lambda name, _value: heard.append(name))
    state.reset_input(session)
    assert state.input_text == "rand(2, 4)" and "input_text" in heard
    state.seed, state.loss, state.mode, state.accumulate = 3, "mean", "eval", True
    request = state.request(session)
    assert request.inputs.text == "rand(2, 4)"  # parsed, not the raw text
    assert (request.seed, request.loss, request.train, request.accumulate) == (3, "mean", False, True)
    assert request.model is session.opened
    state.mode = "train"
    assert state.request(session).train is True


def test_a_bad_input_is_a_one_line_error_and_a_bad_mode_is_refused() -> None:
    session = Session(open_source("demo:mlp"))
    state = BackwardState(input_text="rand(2, four)")
    with pytest.raises(ParamscopeError) as caught:
        state.request(session)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="mode"):
        BackwardState(mode="training")


def test_the_tensors_given_to_explore_are_the_input() -> None:
    model = nn.Linear(3, 1)
    given = torch.ones(2, 3)
    opened = OpenedModel(model, "live model", "live")
    opened.extras["inputs"] = given
    session = Session(opened)
    state = BackwardState()
    state.reset_input(session)
    assert (state.input_text, state.input_note) == (EXPLORE_INPUTS, EXPLORE_NOTE)
    request = state.request(session)
    assert request.inputs[0] is given
    result = run(request)
    assert torch.equal(model.weight.grad, given.sum(0, keepdim=True))
    assert result.loss == pytest.approx(float(model(given).sum().detach()))
