"""The Initialize panel's computations, plain Python that a worker runs: staging and preview.

:func:`stage_in_worker` computes a large edit's new values (``TensorEditCommand.stage``) and the
summaries shown after it; :func:`build_in_worker` first plans and builds an init over many tensors;
:func:`compute_preview` runs a rule on copies and summarizes the tensor shown. None touches a widget
or the live values, so all run off the GUI thread; the panel applies their results on the GUI thread.
An edit that cannot be staged and would freeze the window (lsuv runs the model's forward) is done
on the model in the worker, the model busy meanwhile (:func:`do_in_worker`), as a backward is.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from paramscope.core.edit.commands import Command, TensorEditCommand
from paramscope.core.edit.session import Session
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rule_plans import Plan
from paramscope.core.init.rules import InitCommand, build_commands, preview_rules
from paramscope.core.init.theory import theory_for
from paramscope.core.model.model_statistics import TensorSummary, summarize
from paramscope.core.model.tensor_stats import Histogram
from paramscope.core.tasks import SliceState, TaskState
from paramscope.gui.plots.histogram_view import Theory

#: The initializer and its arguments at the time of Apply (for the theory curve drawn after).
Form = tuple[str, dict[str, object]]
#: The rest of Apply once an edit is in effect: given the command and the init's plan, if any.
Finish = Callable[[Command, Plan | None], None]


@dataclass(frozen=True)
class Staged:
    """What the worker hands back: torch's warnings, and summaries of the tensor shown after."""

    notices: list[str]
    after: TensorSummary
    before: TensorSummary | None  # None: the session already knew it


@dataclass(frozen=True)
class Pending:
    """A large edit being computed in the worker, and what to do once it is in effect.

    ``command`` and ``name`` are None while the worker still builds the command (:class:`Built`).
    """

    command: TensorEditCommand | None
    what: str  # the busy name: "init" or "value edit"
    name: str | None  # the tensor shown after
    form: Form
    finish: Finish  # the rest of Apply, once in effect
    text: str  # what the messages call it


@dataclass(frozen=True)
class Built:
    """An edit of many tensors built (an init planned) and, where it can be, staged in the worker."""

    plan: Plan | None
    command: TensorEditCommand
    name: str  # the tensor shown after
    staged: Staged | None  # None: it runs on the model (a reset or a user's function reads it)


def _notices(caught: list[warnings.WarningMessage]) -> list[str]:
    return list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))


def stage_in_worker(command: TensorEditCommand, name: str, summarize_before: bool, state: TaskState) -> Staged:
    """Compute ``command``'s new values and the summaries shown after it (runs in a worker).

    The summaries are made here too: a histogram of a GPT-2 embedding takes as long as its init.
    """
    # Warnings come from this thread: caught here and passed on as notices, as execute does.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        command.stage(SliceState(state, 0.0, 0.7))
        after_values = command.values(name, after=True)
        before_values = command.values(name, after=False)
        assert after_values is not None and before_values is not None
        after = summarize(after_values, state=SliceState(state, 0.7, 0.85))
        before = None
        if summarize_before:
            before = summarize(before_values, state=SliceState(state, 0.85, 1.0))
    return Staged(_notices(caught), after, before)


#: Edits costing more than this many elements of a ``normal_`` edit (``TensorEditCommand.work``)
#: are computed in a worker: a GPT-2 ``*.weight`` init froze the window for about a second, an
#: ``orthogonal_`` of a 2048x2048 weight 0.6 s. Smaller ones run at once (no thread to wait for).
BACKGROUND_NUMEL = 1 << 22
BACKGROUND_TENSORS = 2_000  # or over this many tensors: ~10 us each on the GUI thread adds up


def builds_in_background(session: Session, names: list[str]) -> bool:
    """Whether an edit of ``names`` is even built in the worker: over BACKGROUND_TENSORS tensors,
    or over 4 MiB of values still in a lazily opened model's files (a 1.85 GB embedding: ~1 s)."""
    return len(names) > BACKGROUND_TENSORS or session.unread_bytes(names) > BACKGROUND_NUMEL


def in_background(command: Command) -> bool:
    """Whether ``command`` runs in the worker: a large edit, or one that runs the model's forward
    (lsuv of one layer of a 0.5B model froze the window for 3.5 s)."""
    if not isinstance(command, TensorEditCommand):
        return False
    forward = isinstance(command, InitCommand) and command.rule_plan.initializer.needs_input
    return forward or command.work > BACKGROUND_NUMEL or len(command.touched) > BACKGROUND_TENSORS


def do_in_worker(command: TensorEditCommand, name: str, summarize_before: bool, state: TaskState) -> Staged:
    """Do an edit that cannot be staged on copies (lsuv runs the model's forward; a reset or a
    user's function reads the live module) on the model itself, off the GUI thread, while the
    model is busy. The GUI thread then records it: ``do`` again only puts back the same values.
    A failure restores the values before it (``TensorEditCommand.do``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        command.do()
        after_values, before_values = command.values(name, after=True), command.values(name, after=False)
        assert after_values is not None and before_values is not None
        after = summarize(after_values, state=SliceState(state, 0.0, 0.5))
        before = summarize(before_values, state=SliceState(state, 0.5, 1.0)) if summarize_before else None
    return Staged(_notices(caught), after, before)


def worker_job(command: TensorEditCommand, name: str, summarize_before: bool) -> Callable[[TaskState], Staged]:
    """What the worker runs for ``command``: its values staged on copies where it can be, else
    the edit itself (:func:`do_in_worker`)."""
    work = stage_in_worker if command.can_stage else do_in_worker
    return lambda state: work(command, name, summarize_before, state)


#: What builds an edit's command (and the init's plan): run by :func:`build_in_worker`.
Builder = Callable[[], tuple[Plan | None, Command]]


def init_builder(session: Session, rule: InitRule, seed: int | None, skip_refused: bool) -> Builder:
    """Plan ``rule`` and build its command, when called."""

    def build() -> tuple[Plan | None, Command]:
        the_plan, commands = build_commands(session, [rule], seed, skip_refused)
        if not commands:
            raise ParamscopeError("nothing to initialize: every target was refused")
        return the_plan, commands[0]

    return build


def build_in_worker(session: Session, build: Builder, selected: str | None, state: TaskState) -> Built:
    """Build an edit's command, then stage it (runs in a worker; the model is busy meanwhile).

    Planning and building take ~10-20 us per tensor: over 100,000 they froze the window for
    seconds.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        the_plan, command = build()
    assert isinstance(command, TensorEditCommand)
    touched = command.touched
    name = selected if selected in set(touched) else touched[0]
    staged = None
    if command.can_stage:
        staged = stage_in_worker(command, name, session.summary(name) is None, state)
        staged = Staged(_notices(caught) + staged.notices, staged.after, staged.before)
    return Built(the_plan, command, name, staged)


@dataclass(frozen=True)
class Previewed:
    """A preview, computed on copies in the worker: what the main histogram draws."""

    key: str  # the rule's text: Apply with the same rule writes exactly this
    seed: int
    name: str  # the tensor shown (the selected one when it is a target)
    after: Histogram
    before: TensorSummary | None  # None: the session already had the current values' summary
    notices: list[str]


def compute_preview(
    session: Session, rule: InitRule, seed: int, skip_refused: bool, selected: str | None, state: TaskState | None = None
) -> Previewed:
    """Run ``rule`` on copies and summarize the tensor shown; the model is not touched."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        the_plan, tensors = preview_rules(session, [rule], seed, skip_refused)
        touched = list(the_plan.touched)
        name = selected if selected in touched else touched[0]
        after = summarize(tensors[name], state=state).histogram
        before = None
        if session.summary(name) is None:
            before = summarize(session.tensor(name).detach(), state=state)
    return Previewed(rule.text, seed, name, after, before, _notices(caught))


def theory_curve(initializer: str, kwargs: dict, shape: tuple[int, ...] | None, histogram: Histogram) -> Theory | None:
    """``(x, pdf, label)`` for the histogram view, or None if there is no simple density."""
    theory = theory_for(initializer, kwargs, shape)
    if theory is None or len(histogram.edges) < 2:
        return None
    x, _ = theory.curve(np.asarray(histogram.edges), 1)
    return x, theory.pdf(x), theory.text
