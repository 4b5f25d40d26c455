"""Plans: what each rule of a request will change, checked before anything is applied.

A plan lists each rule's hits (with the aliases that change with them), the tensors that refuse
the initializer and why, the modules a ``default`` rule resets (and the tensors that adds), and
notes such as misleading fans; a rule that hits nothing is refused as a likely typo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paramscope.core.errors import RuleError, listed
from paramscope.core.init.custom_init import LoadedCustom
from paramscope.core.init.initializer_base import Initializer
from paramscope.core.init.quantized import quantized_problem
from paramscope.core.init.rule_parse import InitRule, parse_rule
from paramscope.core.init.selectors import owner_module_name, resolve_targets
from paramscope.core.model.fans import fan_note, fans_used
from paramscope.core.model.report import ModelReport

if TYPE_CHECKING:
    from paramscope.core.edit.session import Session


class RefusedError(RuleError):
    """Some targets cannot take the initializer; nothing was applied."""

    def __init__(self, message: str, plan: Plan) -> None:
        super().__init__(message)
        self.plan = plan


@dataclass
class TensorHit:
    """One tensor a rule hits.

    Attributes:
        name: canonical name (what the command changes).
        matched: the name the selector matched (may be an alias of ``name``).
        aliases: every name of this tensor; all of them change together.
        refused: why the initializer cannot apply here, or None.
    """

    name: str
    matched: str
    aliases: tuple[str, ...]
    refused: str | None = None

    @property
    def also_changes(self) -> tuple[str, ...]:
        return tuple(a for a in self.aliases if a != self.matched)


@dataclass
class RulePlan:
    """What one rule will do: its hits in order and, for ``default``, the modules reset."""

    rule: InitRule
    initializer: Initializer
    kwargs: dict[str, Any]
    hits: list[TensorHit]
    modules: list[str] = field(default_factory=list)  # for default: modules to reset, in order
    module_refusals: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)  # tensors a reset changes beyond the hits
    notes: list[str] = field(default_factory=list)  # what the user should know before applying
    run_notes: list[str] = field(default_factory=list)  # what the last run said (lsuv's skipped layers)

    @property
    def targets(self) -> list[str]:
        return [h.name for h in self.hits]

    @property
    def touched(self) -> list[str]:
        """Every canonical tensor this rule changes (hits, then what reset_parameters adds)."""
        return self.targets + [n for n in self.extra if n not in self.targets]

    @property
    def refusals(self) -> list[tuple[str, str]]:
        return [(h.name, h.refused) for h in self.hits if h.refused is not None]

    def describe(self) -> list[str]:
        """Lines a user reads before applying: one per hit, with aliases and refusals."""
        lines = [f"{self.rule.label}: {len(self.hits)} tensor(s)" if self.hits else f"{self.rule.label}: hits nothing"]
        for hit in self.hits:
            line = f"  {hit.matched}"
            if hit.matched != hit.name:
                line += f" (= {hit.name})"
            if hit.also_changes:
                line += f"  [tied: also changes {', '.join(hit.also_changes)}]"
            if hit.refused:
                line += f"  REFUSED: {hit.refused}"
            lines.append(line)
        extra = [n for n in self.extra if n not in self.targets]
        if extra:
            lines.append(f"  reset_parameters() also changes: {', '.join(extra)}")
        lines += [f"  note: {note}" for note in self.notes]
        return lines


@dataclass
class Plan:
    """What a request (one or more rules) will change, checked before anything is applied."""

    rules: list[RulePlan]
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # refusals left out on request

    @property
    def refusals(self) -> list[tuple[str, str, str]]:
        """``(rule text, tensor, reason)`` for every refused tensor."""
        return [(rp.rule.label, n, why) for rp in self.rules for n, why in rp.refusals]

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def touched(self) -> list[str]:
        seen: dict[str, None] = {}
        for rule_plan in self.rules:
            for name in rule_plan.touched:
                seen.setdefault(name, None)
        return list(seen)

    def describe(self, report: ModelReport | None = None) -> str:
        """Each rule's lines; with ``report``, then the weight matrices no rule touches."""
        lines = [line for rp in self.rules for line in rp.describe()]
        untouched = self.untouched_matrices(report) if report is not None else []
        if untouched:  # (a mixture of experts' gate_up_proj: no "weight" in its name, no rule for it)
            lines.append(f"not touched by any rule, keeping their values: {len(untouched)} weight matrix(es): " + listed(untouched))
        return "\n".join(lines)

    def untouched_matrices(self, report: ModelReport) -> list[str]:
        """Floating parameters of 2 or more dimensions that no rule changes."""
        touched = set(self.touched)
        return [
            name for name, info in report.parameters.items()
            if name not in touched and info.shape is not None and len(info.shape) >= 2
            and (info.dtype.startswith(("float", "bfloat", "complex")))
        ]  # fmt: skip

    def drop_refused(self) -> list[tuple[str, str, str]]:
        """Remove refused hits (to apply the rest); returns what was dropped, as :attr:`refusals`."""
        dropped = self.refusals
        for rule_plan in self.rules:
            rule_plan.hits[:] = [h for h in rule_plan.hits if h.refused is None]
        return dropped

    def refusal_message(self) -> str:
        if not self.refusals:
            return "nothing applied: no rule hits a tensor that can take it"
        parts = [f"{name}: {why}" for _, name, why in self.refusals]
        first_rule = self.refusals[0][0]
        return f"rule {first_rule!r}: nothing applied, refused for " + listed(parts, "; ")


class UnmatchedRuleError(RuleError):
    """A rule whose selector hits no parameter: a typo (``*.wieght``) must not pass silently."""


class UnmatchedRuleWarning(UserWarning):
    """A rule that hits nothing, left out because the user asked to skip what cannot apply."""


def unmatched_message(rule_plan: RulePlan, report: ModelReport) -> str:
    """One line naming the rule and showing what its selector could have matched."""
    selector = rule_plan.rule.selector
    if selector.kind == "type":
        types = sorted({m.type_name for m in report.modules.values() if m.parameters})
        hint = f"no module of type {selector.pattern} owns a parameter (types with parameters: {', '.join(types[:8]) or 'none'})"
    else:
        names = list(report.parameters)
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        hint = f"no parameter name matches {selector.text!r} (names look like: {shown or 'none'})"
    return f"rule {rule_plan.rule.label!r} hits nothing: {hint}"


def check_unmatched(the_plan: Plan, report: ModelReport, skip: bool = False) -> list[str]:
    """Refuse rules that hit nothing; with ``skip``, return them as warnings instead.

    Skipping still refuses when no rule hits anything: there would be nothing to do.

    Raises:
        UnmatchedRuleError: names the first rule that hits nothing.
    """
    messages = [unmatched_message(rp, report) for rp in the_plan.rules if not rp.hits]
    if messages and (not skip or all(not rp.hits for rp in the_plan.rules)):
        raise UnmatchedRuleError(messages[0])
    return messages


def plan_rule(report: ModelReport, model: nn.Module, rule: InitRule, cache: LoadedCustom | None = None,
              tensor_of: Callable[[str], torch.Tensor] | None = None) -> RulePlan:  # fmt: skip
    """Resolve and check one rule against a model without changing anything.

    ``tensor_of`` looks a canonical name up (a session's map); by default the model is walked.
    """
    initializer = rule.resolve_initializer(cache)
    try:
        kwargs = initializer.coerce_kwargs(dict(rule.kwargs))
    except ValueError as exc:
        raise RuleError(f"rule {rule.label!r}: {exc}") from exc
    problem = initializer.request_problem(kwargs)
    if problem is not None:
        raise RuleError(f"rule {rule.label!r}: {problem}")
    targets = resolve_targets(report, rule.selector, model)
    if tensor_of is None:
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        tensor_of = tensors.__getitem__
    hits: list[TensorHit] = []
    rule_plan = RulePlan(rule, initializer, kwargs, hits)
    uses_fans = bool(fans_used(initializer.name, kwargs))
    for name in targets:
        info = report.tensor(name)
        matched = name if len(info.aliases) < 2 else next(
            (a for a in info.aliases if rule.selector.matches(a, report, model)), name)
        hit = TensorHit(name, matched, info.aliases)
        if getattr(initializer, "acts_on_module", False):
            module_name = owner_module_name(name)
            module = model.get_submodule(module_name)
            held = [tensor_of(report.alias_to_name.get(other, other)) for other in module_tensors(model, module_name)]
            hit.refused = initializer.check_module(module, held)  # type: ignore[attr-defined]
            if hit.refused is None and module_name not in rule_plan.modules:
                rule_plan.modules.append(module_name)
                for other in module_tensors(model, module_name):
                    canonical = report.alias_to_name.get(other, other)
                    if canonical not in rule_plan.extra:
                        rule_plan.extra.append(canonical)
        else:
            hit.refused = quantized_problem(name, report) or initializer.check(tensor_of(name), kwargs)
        if hit.refused is None and uses_fans:
            _add_fan_note(rule_plan, model, name, tensor_of)
        hits.append(hit)
    return rule_plan


def _add_fan_note(rule_plan: RulePlan, model: nn.Module, name: str, tensor_of: Callable[[str], torch.Tensor]) -> None:
    """Where torch's fan_in/fan_out mislead for this weight (grouped, transposed convs, stacked
    experts), say so."""
    tensor = tensor_of(name)
    if tensor.dim() < 3:  # only 3-D and larger: no module looked up (seconds for 100,000)
        return
    try:
        module = model.get_submodule(owner_module_name(name))
    except AttributeError:
        return
    note = fan_note(module, tensor, rule_plan.initializer.name, rule_plan.kwargs)
    if note is not None:
        rule_plan.notes.append(f"{name}: {note}")


def plan(source: Session | tuple[ModelReport, nn.Module], rules: Sequence[InitRule | str]) -> Plan:
    """Which tensors each rule hits, and which refuse, before anything is applied.

    Args:
        source: a Session, or ``(report, model)``.
        rules: parsed rules or rule texts.
    """
    report, model = (source.report, source.model) if not isinstance(source, tuple) else source
    tensor_of = None if isinstance(source, tuple) else source.checkable  # (values unread: see build_commands)
    cache = LoadedCustom()
    parsed = [parse_rule(r) if isinstance(r, str) else r for r in rules]
    the_plan = Plan([plan_rule(report, model, r, cache, tensor_of) for r in parsed])
    why = None if isinstance(source, tuple) else source.opened.forward_unavailable
    needy = next((rp for rp in the_plan.rules if rp.initializer.needs_input), None)
    if why and needy is not None:
        raise RuleError(f"rule {needy.rule.label!r}: {needy.initializer.name} needs the model's code to run "
                        f"its forward, and this source has none ({why})")  # fmt: skip
    return the_plan


def module_tensors(model: nn.Module, module_name: str) -> list[str]:
    """Qualified names of every parameter and buffer under ``module_name`` (what reset may change)."""
    module = model.get_submodule(module_name)
    prefix = f"{module_name}." if module_name else ""
    names = [prefix + n for n, _ in module.named_parameters()]
    names += [prefix + n for n, _ in module.named_buffers()]
    return names
