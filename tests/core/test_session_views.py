"""What a Session keeps for the views so that they never pass over every tensor themselves
(issue 14): diagnostics, which tensors have NaN/Inf or no summary yet, sortable statistic
columns, the report's orders; and selected names resolved by lookup."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from paramscope.core.edit.commands import TensorEditCommand
from paramscope.core.edit.session import Session
from paramscope.core.errors import RuleError
from paramscope.core.init.selectors import Selector, resolve_targets
from paramscope.core.model.diagnostics import diagnose
from paramscope.core.model.model_statistics import (
    NO_NUMBER,
    SORTABLE_STATS,
    stat_columns,
    summarize,
)
from paramscope.core.sources.sources import OpenedModel, open_source


def _session() -> Session:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    net[2].weight.requires_grad_(False)  # a frozen parameter: a diagnostic of the structure
    return Session(OpenedModel(net, "test", "python"))


def _summaries(session: Session, names) -> dict:
    return {n: summarize(session.tensor(n).detach()) for n in names}


def test_diagnostics_are_kept_until_nan_or_inf_change_and_equal_diagnose() -> None:
    session = _session()
    first = session.diagnostics()
    assert first == diagnose(session.report, session.summaries)
    session.store_summaries(_summaries(session, session.missing_summaries()))
    assert session.diagnostics() is first  # finite numbers: nothing new to say
    weight = session.tensor("0.weight")
    session.execute(TensorEditCommand("nan", [("0.weight", weight)], lambda: weight.data.fill_(math.nan)))
    assert session.diagnostics() is first  # its numbers are not known yet
    session.store_summaries(_summaries(session, ["0.weight"]))
    assert session.nonfinite == {"0.weight"}
    nan = session.diagnostics()
    assert nan == diagnose(session.report, session.summaries) and nan[0].message == "0.weight has 12 NaN and 0 Inf values"
    session.undo()
    assert session.nonfinite == set() and session.diagnostics() == first


def test_missing_summaries_are_listed_in_report_order() -> None:
    session = _session()
    names = [*session.report.parameters, *session.report.buffers]
    assert session.missing_summaries() == names
    session.store_summaries(_summaries(session, names[1:3]))
    assert session.missing_summaries() == [names[0], *names[3:]]


def test_a_statistic_column_follows_summaries_edits_and_rebuilds() -> None:
    session = _session()
    order = session.report.order
    session.store_summaries(_summaries(session, ["0.weight", "0.bias"]))
    means = session.stat_column("mean")
    assert means[order["0.weight"]] == pytest.approx(float(session.tensor("0.weight").detach().double().mean()))
    assert means[order["2.weight"]] == NO_NUMBER  # no summary yet
    session.store_summaries(_summaries(session, ["2.weight"]))  # kept up to date once asked for
    assert means[order["2.weight"]] == pytest.approx(float(session.tensor("2.weight").detach().double().mean()))
    weight = session.tensor("0.weight")
    session.execute(TensorEditCommand("zero", [("0.weight", weight)], lambda: weight.data.zero_()))
    assert session.stat_column("mean")[order["0.weight"]] == NO_NUMBER  # changed: not known until computed
    session.rebuild()
    assert (session.stat_column("mean") == NO_NUMBER).all()
    with pytest.raises(ValueError, match="numel"):
        session.stat_column("numel")


def test_stat_columns_put_each_number_at_its_position() -> None:
    session = _session()
    values = torch.tensor([1.0, math.inf, -2.0, 0.0])
    summaries = {"2.bias": summarize(torch.tensor([0.5, 1.5])), "0.bias": summarize(values), "elsewhere": summarize(values)}
    columns = stat_columns(session.report.order, summaries)
    assert set(columns.values) == set(SORTABLE_STATS) and columns.nonfinite == {"0.bias"}
    position = dict(zip(columns.positions.tolist(), range(len(columns.positions)), strict=True))
    bias = position[session.report.order["0.bias"]]
    assert columns.values["max"][bias] == 1.0 and columns.values["inf"][bias] == 1 and columns.values["zero_fraction"][bias] == 0.25
    assert np.isclose(columns.values["mean"][position[session.report.order["2.bias"]]], 1.0)
    assert len(columns.positions) == 2  # a name the report does not know has no place


def test_the_reports_orders_are_its_own_listing() -> None:
    report = open_source("demo:cnn")
    session = Session(report)
    assert list(session.report.order) == [*session.report.parameters, *session.report.buffers]
    assert list(session.report.order.values()) == list(range(len(session.report.order)))
    assert list(session.report.module_order) == list(session.report.modules)
    for info in session.report.modules.values():
        for row, child in enumerate(info.children):
            assert session.report.module_rows[child] == row


def test_selected_names_resolve_to_canonical_names_in_model_order() -> None:
    report = Session(open_source("demo:shared")).report  # Sequential(linear, linear): one weight, two names
    assert resolve_targets(report, Selector.of_names(["1.weight"])) == ["0.weight"]
    assert resolve_targets(report, Selector.of_names(["1.weight", "0.weight"])) == ["0.weight"]  # listed once
    cnn = Session(open_source("demo:cnn")).report
    (buffer, *_), (first, second, *_) = cnn.buffers, cnn.parameters
    assert resolve_targets(cnn, Selector.of_names([buffer, second, first])) == [first, second, buffer]
    with pytest.raises(RuleError, match="no tensor named 'nope'"):
        resolve_targets(cnn, Selector.of_names(["nope"]))


def test_gradients_are_read_as_they_are_now() -> None:
    session = _session()
    params = list(session.report.parameters)
    assert not any(map(session.has_grad, params))
    session.model(torch.rand(5, 4)).sum().backward()
    assert [n for n in params if session.has_grad(n)] == ["0.weight", "0.bias", "1.weight", "1.bias", "2.bias"]  # 2.weight is frozen
    grads = session.gradients(["0.bias", "2.weight"])
    assert grads["0.bias"] is session.tensor("0.bias").grad and grads["2.weight"] is None


def test_what_is_missing_is_known_by_count_and_a_foreign_name_never_counts() -> None:
    """Missing summaries and gradient norms are found by count (a pass over a million names
    stalled the window); a name that is not the report's must not make the count look full."""
    session = _session()
    order = list(session.report.order)
    session.store_summaries({**_summaries(session, order[:-1]), "not.a.tensor": summarize(torch.ones(2))})
    assert session.missing_summaries() == order[-1:]
    session.store_summaries(_summaries(session, order[-1:]))
    assert session.missing_summaries() == []

    params = list(session.report.parameters)
    assert session.grad_norms == dict.fromkeys(params)  # no .grad on opening: known at once
    session.replace_grad_norms({**dict.fromkeys(params[:-1], 1.0), "not.a.parameter": 2.0})
    assert session.missing_grad_norms() == params[-1:]
    assert session.store_grad_norms({params[-1]: 3.0, "not.a.parameter": 2.0}, session.grad_norms_version)
    assert session.missing_grad_norms() == [] and "not.a.parameter" not in session.grad_norms
