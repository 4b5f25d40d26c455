"""``paramscope bench`` steps on the model in memory: statistics, backward and initializers.

Each step times the app's way against the plain torch/numpy baseline (see
:func:`paramscope.core.bench.bench_rows.compare`) and returns its rows; the file steps (export, lazy
open) are in :mod:`paramscope.core.bench.bench_files`.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from typing import Any

import torch

from paramscope.core.bench.bench_model import distinct_parameters
from paramscope.core.bench.bench_rows import Context, Row, _finish, _pending, compare


def step_statistics(ctx: Context) -> list[Row]:
    import numpy as np

    from paramscope.core.model import kernels
    from paramscope.core.model.model_statistics import compute_model_statistics
    from paramscope.core.model.report import build_report

    compiled = kernels.load()  # reads from 2^28 values use them; GPT-2 alone stays on the torch loops
    tensors = distinct_parameters(ctx.model)
    report = build_report(ctx.model)
    names = list(report.parameters)

    def read_all() -> None:
        for t in tensors:
            t.sum()

    def app() -> None:
        compute_model_statistics(ctx.model, report, names=names)

    def numpy_hist() -> None:
        for t in tensors:
            np.histogram(t.numpy(), bins=64)

    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    note = f"{len(tensors)} tensors, {nbytes / 1e6:.0f} MB, {'compiled' if compiled else 'torch'} loops"
    rows = [
        _finish(
            Row(
                "statistics",
                "statistics + histograms vs one read (x.sum())",
                "<= 8x",
                8.0,
                note=note,
            ),
            *compare(app, read_all, ctx.repeats),
        ),
        _finish(
            Row(
                "statistics",
                "statistics + histograms vs numpy.histogram alone",
                "< 1x",
                1.0,
                note=note,
            ),
            *compare(app, numpy_hist, ctx.repeats),
        ),
    ]
    return rows


def step_backward(ctx: Context) -> list[Row]:
    name = "backward through the app vs plain forward/backward"
    try:
        from paramscope.core.backward.backward import run_backward
    except ImportError:
        return [_pending("backward", name, "<= 1.05x", "pending: core.backward not available")]
    tokens = 16 if ctx.quick else 64
    idx = torch.randint(0, ctx.cfg.vocab, (1, tokens), generator=torch.Generator().manual_seed(0))
    model = ctx.model

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        model(idx).sum().backward()

    def app() -> None:
        run_backward(model, idx, "sum")

    row = Row("backward", name, "<= 1.05x", 1.05, note=f"input 1x{tokens} tokens, loss sum")
    return [_finish(row, *compare(app, plain, ctx.close_repeats))]


# name -> (kwargs, applies to 2-D weights only)
INITIALIZERS: dict[str, tuple[dict[str, Any], bool]] = {
    "normal_": ({"std": 0.02}, False),
    "uniform_": ({"a": -0.1, "b": 0.1}, False),
    "trunc_normal_": ({"std": 0.02}, False),
    "constant_": ({"val": 0.5}, False),
    "zeros_": ({}, False),
    "ones_": ({}, False),
    "xavier_uniform_": ({}, True),
    "xavier_normal_": ({}, True),
    "kaiming_uniform_": ({"a": math.sqrt(5)}, True),
    "kaiming_normal_": ({}, True),
}


def step_initializers(ctx: Context) -> list[Row]:
    try:
        from paramscope.core.edit.session import Session
        from paramscope.core.init.rules import InitRule, Selector, apply_rules
        from paramscope.core.sources.sources import OpenedModel
    except ImportError:
        return [
            _pending(
                "initializers",
                "initializers through the app",
                "<= 1.1x",
                "pending: core.initializers / rules not available",
            )
        ]

    def new_session() -> Session:
        return Session(OpenedModel(ctx.model, "bench:gpt2", "python"))

    def apply(session: Session, names: list[str], init_name: str, kwargs: dict) -> None:
        apply_rules(session, [InitRule.make(Selector.of_names(names), init_name, **kwargs)], seed=0)

    params = dict(ctx.model.named_parameters())
    rows = []
    for init_name, (kwargs, two_d) in INITIALIZERS.items():
        names = [n for n, p in params.items() if p.dim() >= 2] if two_d else list(params)
        rows.append(_initializer_row(ctx, params, names, init_name, kwargs, new_session, apply))
    return rows


def _initializer_row(
    ctx: Context,
    params: dict[str, torch.nn.Parameter],
    names: list[str],
    init_name: str,
    kwargs: dict,
    new_session: Callable[[], Any],
    apply: Callable[[Any, list[str], str, dict], None],
) -> Row:
    """One initializer on ``names``: ``apply`` (a rule through an undoable session) against the
    bare ``torch.nn.init`` call; a failure is reported in the row's note."""
    function = getattr(torch.nn.init, init_name)
    takes_generator = "generator" in function.__code__.co_varnames

    def bare() -> None:
        g = torch.Generator().manual_seed(0)
        extra = {"generator": g} if takes_generator else {}
        with torch.no_grad():
            for n in names:
                function(params[n], **kwargs, **extra)

    sessions: list[Any] = []

    def fresh_session() -> None:
        # The app has its session already; a fresh one per run keeps the undo copies bounded.
        sessions.clear()
        gc.collect()
        sessions.append(new_session())

    def app() -> None:
        apply(sessions[0], names, init_name, kwargs)

    row = Row(
        "initializers",
        f"init {init_name} through the app (undoable) vs torch.nn.init",
        "<= 1.1x",
        1.1,
        note=f"{len(names)} tensors",
    )
    try:
        _finish(row, *compare(app, bare, ctx.close_repeats, setup=fresh_session))
        sessions.clear()
    except Exception as exc:  # report, keep going
        row.note = f"failed: {type(exc).__name__}: {exc}"
    return row
