"""What the Initialize panel asks for, without Qt: targets, initializer, arguments, seed, value edit.

:class:`InitState` holds the request (which tensors, which initializer with which arguments,
which seed) and turns it into the core's objects: target names, an :class:`InitRule`, the plan's
lines. :class:`ValueEditState` does the same for "add 1", "clamp" and expressions. The GUI panel
only binds widgets to these fields; a script or a test drives the same logic directly.

Example:
    >>> state = InitState(target_mode=RULE, rule_text="*.weight")
    >>> state.initializer = "constant_"  # its arguments, with their defaults
    >>> state.params
    {'val': 0.0}
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from paramscope.core.edit.commands import Command
from paramscope.core.edit.session import Session
from paramscope.core.edit.value_edits import EDIT_KINDS, value_edit_command
from paramscope.core.errors import ParamscopeError
from paramscope.core.init.custom_init import custom_from_source
from paramscope.core.init.initializer_base import REQUIRED, Initializer, ParamSpec
from paramscope.core.init.initializers import CATALOGUE
from paramscope.core.init.rule_parse import InitRule
from paramscope.core.init.rule_plans import plan
from paramscope.core.init.selectors import (
    Selector,
    parse_selector,
    resolve_targets,
    weights_and_biases,
)
from paramscope.core.model.report import ModelReport
from paramscope.core.observable import Field, State

SELECTED_TENSOR, SELECTED_MODULE, RULE = "tensor", "module", "rule"
TARGET_MODES = (SELECTED_TENSOR, SELECTED_MODULE, RULE)
CUSTOM = "custom"  # the initializer is a Python function typed or loaded by the user
NO_TARGETS = "(no tensors: select one, or write a rule)"
LISTED_TARGETS = 500  # targets a plan lists and checks as they are typed; the rest are counted


def default_value(spec: ParamSpec) -> object:
    """What a fresh form shows for ``spec``: its default, or an empty value of its kind."""
    default = None if spec.default is REQUIRED else spec.default
    if spec.kind == "choice":
        return str(default) if default is not None and str(default) in spec.choices else spec.choices[0]
    if spec.kind == "bool":
        return bool(default)
    if spec.kind == "int":
        return int(default or 0)
    if spec.kind == "float":
        return float(default or 0.0)
    return str(default or "")


def default_params(initializer: str) -> dict[str, object]:
    """The arguments a fresh form gives ``initializer`` (none for a custom function)."""
    entry = CATALOGUE.get(initializer)
    return {} if entry is None else {spec.name: default_value(spec) for spec in entry.params}


def _frozen(value: Any) -> Any:
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


class InitState(State):
    """The Initialize request. Choosing another initializer resets the arguments to its defaults."""

    target_mode = Field(SELECTED_TENSOR)  # SELECTED_TENSOR, SELECTED_MODULE or RULE
    rule_text = Field("*.weight")  # a selector (glob, re:REGEX, type:Linear) in RULE mode
    weights = Field(True)  # include weights (the tutorial's 'weight' in name)
    biases = Field(True)
    initializer = Field("normal_")  # a CATALOGUE name or CUSTOM
    params: Field[dict[str, object]] = Field(default_factory=dict)  # the initializer's arguments
    custom_source = Field("")  # Python text defining the custom function
    custom_function = Field("init_weight_")  # its name ("": the last one defined)
    seed_text = Field("")  # "": a random seed, shown after use
    skip_refused = Field(False)  # skip targets the initializer refuses instead of failing

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if "params" not in values:
            self.params = default_params(self.initializer)
        self._custom: tuple[tuple[str, str], Initializer] | None = None
        self._previewed: tuple[str, int] | None = None  # (rule text, seed) of the last preview
        self.add_callback("initializer", lambda name: setattr(self, "params", default_params(name)))

    # --- the initializer ---------------------------------------------------------------------
    def set_param(self, name: str, value: object) -> None:
        if name not in self.params:
            raise ParamscopeError(f"{self.initializer} has no argument {name!r}")
        self.params = {**self.params, name: value}

    def kwargs(self) -> dict[str, object]:
        return {} if self.initializer == CUSTOM else dict(self.params)

    def initializer_object(self) -> Initializer | str:
        """The catalogue name, or the custom function (its code runs once per new text)."""
        if self.initializer != CUSTOM:
            return self.initializer
        key = (self.custom_source, self.custom_function.strip())
        if self._custom is None or self._custom[0] != key:
            self._custom = (key, custom_from_source(key[0], key[1] or None))
        return self._custom[1]

    # --- targets -----------------------------------------------------------------------------
    def target_names(self, session: Session) -> list[str]:
        """Canonical names the request hits (raises ParamscopeError for a bad rule)."""
        if self.target_mode == SELECTED_TENSOR:
            names = [session.selected_tensor] if session.selected_tensor else []
        elif self.target_mode == SELECTED_MODULE:
            names = [info.name for _, info in session.report.parameters_under(session.selected_module)]
        else:
            names = resolve_targets(session.report, parse_selector(self.rule_text), session.model)
        return self.kept_kinds(session.report, names)

    def kept_kinds(self, report: ModelReport, names: list[str]) -> list[str]:
        """``names`` less what the weights/biases boxes leave out (the rules' selectors of those names)."""
        return weights_and_biases(report, names, self.weights, self.biases)

    def rule(self, session: Session) -> InitRule:
        initializer = self.initializer_object()
        kwargs = self.kwargs() if isinstance(initializer, str) else {}
        return InitRule.make(Selector.of_names(self.target_names(session)), initializer, **kwargs)

    def plan_lines(self, session: Session) -> list[str]:
        """One line per target (refused ones say why), or the one-line reason there is none.

        Past :data:`LISTED_TARGETS` targets the rest are counted, not planned: every keystroke
        in a rule over 100,000 tensors planned them all on the GUI thread (seconds).

        A custom function is not run here (it would run on every keystroke): the plan is made
        with ``zeros_`` in its place.
        """
        try:
            names = self.target_names(session)
            if not names:
                return [NO_TARGETS]
            initializer = "zeros_" if self.initializer == CUSTOM else self.initializer
            kwargs = self.kwargs() if initializer != "zeros_" else {}
            listed = names[:LISTED_TARGETS]  # the rest are checked when applied
            the_plan = plan(session, [InitRule.make(Selector.of_names(listed), initializer, **kwargs)])
        except (ParamscopeError, ValueError) as exc:  # a bad rule, or a value the initializer rejects
            return [str(exc)]
        lines = [line.strip() for line in the_plan.describe().splitlines()[1:]]
        if len(names) > len(listed):
            lines.append(f"… and {len(names) - len(listed):,} more ({len(names):,} in all; checked on Apply)")
        return lines

    # --- seed --------------------------------------------------------------------------------
    def seed(self, key: str) -> int | None:
        """The typed seed; else the previewed one when ``key`` (a rule's text) was previewed last."""
        text = self.seed_text.strip()
        if text:
            try:
                return int(text)
            except ValueError:
                raise ParamscopeError(f"seed {text!r}: must be a whole number") from None
        if self._previewed is not None and self._previewed[0] == key:
            return self._previewed[1]  # apply exactly what was previewed
        return None

    def remember_preview(self, key: str, seed: int) -> None:
        self._previewed = (key, seed)

    def forget_preview(self) -> None:
        self._previewed = None

    def request_key(self) -> tuple:
        """Equal keys: the same request (a preview made for another key is stale)."""
        return tuple((name, _frozen(value)) for name, value in self.as_dict().items())


class ValueEditState(State):
    """Add, multiply, set, clamp or an expression in x, applied to the Initialize targets."""

    kind = Field(EDIT_KINDS[0])
    value = Field(1.0)  # for add, multiply and set
    low = Field(-1.0)  # clamp from
    high = Field(1.0)  # clamp to
    expression = Field("x * 2 + 1")

    def uses(self) -> dict[str, bool]:
        """Which of the value fields the current kind reads."""
        return {
            "value": self.kind in ("add", "multiply", "set"),
            "low": self.kind == "clamp",
            "high": self.kind == "clamp",
            "expression": self.kind == "expression",
        }

    def command(self, session: Session, names: list[str]) -> Command:
        """The undoable edit of ``names`` (raises ParamscopeError for bad arguments)."""
        return self.builder(session, names)()

    def builder(self, session: Session, names: list[str]) -> Callable[[], Command]:
        """What builds :meth:`command` later (in a worker), with the fields as they are now."""
        used = self.uses()
        return functools.partial(
            value_edit_command, session, names, self.kind,
            value=self.value if used["value"] else None,
            low=self.low if used["low"] else None,
            high=self.high if used["high"] else None,
            expression=self.expression if used["expression"] else None,
        )  # fmt: skip
