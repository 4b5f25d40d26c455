"""Init rules ``SELECTOR=INIT(key=value,...)``: which tensors, which initializer, applied how.

Selectors (matched against every name of a tensor, so a tied parameter is hit through any alias):
- a glob on the qualified name: ``*.weight``, ``0.*``, ``*``;
- ``re:REGEX`` (``re.search`` on the qualified name);
- ``type:Linear``: tensors whose owning module is a ``Linear`` (or a subclass);
- ``weights`` / ``biases``: the tutorial's ``'weight' in name`` on the local name.

INIT is a ``torch.nn.init`` name with or without the trailing underscore, ``default``
(``reset_parameters()`` of the owning module) or ``file.py:function`` / ``package.module:function``.
Arguments are numbers, strings or booleans, parsed with :mod:`ast` and never evaluated.

A request (one or more rules) owns one ``torch.Generator``, seeded once; tensors are initialized
rule by rule, each rule in the model's ``named_parameters()`` order, so the same seed and rules give
bit-identical tensors to a plain script calling ``torch.nn.init`` with that generator. Rules apply in
order: a later rule overwrites what an earlier one wrote, as the tutorial's loops do.

Example:
    >>> rule = parse_rule("*.weight=normal(mean=0,std=0.01)")
    >>> rule.init, dict(rule.kwargs)
    ('normal', {'mean': 0, 'std': 0.01})
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from paramscope.core.commands import Command, TensorEditCommand
from paramscope.core.errors import ParamscopeError
from paramscope.core.initializers import (
    CustomInitializer,
    Initializer,
    InitializerError,
    LoadedCustom,
    TorchInitializer,
    format_value,
    get_initializer,
    is_custom_reference,
    module_tensors,
    owner_module_name,
)
from paramscope.core.report import ModelReport

if TYPE_CHECKING:
    from paramscope.core.session import Session


class RuleError(ParamscopeError):
    """A rule that cannot be parsed or applied; the message names the rule."""


class RefusedError(RuleError):
    """Some targets cannot take the initializer; nothing was applied."""

    def __init__(self, message: str, plan: Plan) -> None:
        super().__init__(message)
        self.plan = plan


# --- selectors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """Which tensors a rule hits. ``kind``: glob, regex, type, weights, biases or names."""

    kind: str
    pattern: str = ""
    names: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.kind == "glob":
            return self.pattern
        if self.kind == "regex":
            return f"re:{self.pattern}"
        if self.kind == "type":
            return f"type:{self.pattern}"
        if self.kind == "names":
            return ",".join(self.names)
        return self.kind

    @classmethod
    def of_names(cls, names: Sequence[str]) -> Selector:
        """Exactly these tensors (the GUI's selection)."""
        return cls("names", names=tuple(names))

    def matches(self, alias: str, report: ModelReport, model: nn.Module | None = None) -> bool:
        local = alias.rpartition(".")[2]
        if self.kind == "glob":
            return fnmatch.fnmatchcase(alias, self.pattern)
        if self.kind == "regex":
            return re.search(self.pattern, alias) is not None
        if self.kind == "weights":
            return "weight" in local
        if self.kind == "biases":
            return "bias" in local
        if self.kind == "names":
            return alias in self.names
        if self.kind == "type":
            owner = owner_module_name(alias)
            if model is not None:
                try:
                    module = model.get_submodule(owner)
                except AttributeError:
                    return False
                return any(cls.__name__ == self.pattern for cls in type(module).__mro__)
            info = report.modules.get(owner)
            return info is not None and info.type_name == self.pattern
        raise ValueError(f"unknown selector kind {self.kind!r}")


def parse_selector(text: str) -> Selector:
    """``*.weight``, ``re:^0\\.``, ``type:Linear``, ``weights`` or ``biases``."""
    text = text.strip()
    if not text:
        raise RuleError("empty selector: use a glob such as *.weight, re:REGEX or type:Linear")
    if text.startswith("re:"):
        pattern = text[3:]
        try:
            with warnings.catch_warnings():  # "possible nested set" notes on a user's regex
                warnings.simplefilter("ignore", FutureWarning)
                re.compile(pattern)  # cached by re: the later matches do not warn either
        except re.error as exc:
            raise RuleError(f"{text}: bad regular expression: {exc}") from exc
        return Selector("regex", pattern)
    if text.startswith("type:"):
        pattern = text[5:].strip()
        if not pattern.isidentifier():
            raise RuleError(f"{text}: a module type is a class name such as Linear")
        return Selector("type", pattern)
    if text in ("weights", "biases"):
        return Selector(text)
    return Selector("glob", text)


def resolve_targets(report: ModelReport, selector: Selector | str, model: nn.Module | None = None,
                    include_buffers: bool = False) -> list[str]:  # fmt: skip
    """Canonical names of the parameters ``selector`` hits, in ``named_parameters()`` order.

    A tied parameter is hit when any of its names matches, and is listed once.

    Example:
        >>> resolve_targets(build_report(net), "*.weight")
        ['0.weight', '2.weight']
    """
    if isinstance(selector, str):
        selector = parse_selector(selector)
    tables = [report.parameters]
    if include_buffers or selector.kind == "names":
        tables.append(report.buffers)
    hits: list[str] = []
    for table in tables:
        for info in table.values():
            if any(selector.matches(alias, report, model) for alias in info.aliases):
                hits.append(info.name)
    if selector.kind == "names":
        unknown = [n for n in selector.names if n not in report.alias_to_name]
        if unknown:
            raise RuleError(f"no tensor named {unknown[0]!r}")
    return hits


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitRule:
    """One ``SELECTOR=INIT(key=value,...)``.

    ``initializer`` is set for a custom function typed in the editor (the GUI); otherwise
    :meth:`resolve_initializer` finds ``init`` in the catalogue or loads the custom file.
    """

    text: str
    selector: Selector
    init: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    initializer: Initializer | None = field(default=None, compare=False)

    @classmethod
    def make(cls, selector: Selector | str, init: str | Initializer, **kwargs: Any) -> InitRule:
        """A rule built in code (the GUI): ``InitRule.make(Selector.of_names([...]), "normal_", std=0.01)``."""
        if isinstance(selector, str):
            selector = parse_selector(selector)
        initializer = init if isinstance(init, Initializer) else None
        init_name = init.name if isinstance(init, Initializer) else init
        args = ",".join(f"{k}={format_value(v)}" for k, v in kwargs.items())
        text = f"{selector.text}={init_name}" + (f"({args})" if args else "")
        return cls(text, selector, init_name, tuple(kwargs.items()), initializer)

    def resolve_initializer(self, cache: LoadedCustom | None = None) -> Initializer:
        if self.initializer is not None:
            return self.initializer
        try:
            if is_custom_reference(self.init):
                return (cache or LoadedCustom()).get(self.init)
            return get_initializer(self.init)
        except InitializerError as exc:
            raise RuleError(f"rule {self.text!r}: {exc}") from exc


# INIT: a torch.nn.init name, or FILE.py:FUNCTION / package.module:FUNCTION; then (args) or nothing.
_INIT_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z_]\w*|[^()=\s][^()=]*:[A-Za-z_]\w*)\s*(?:\((?P<args>.*)\))?\s*$", re.DOTALL
)


def _literal(node: ast.expr, rule: str) -> Any:
    # Bare words are strings (mode=fan_in); everything else must be a literal. Never evaluated.
    if isinstance(node, ast.Name):
        return node.id
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise RuleError(
            f"rule {rule!r}: {ast.unparse(node)!r} is not a number, string or boolean"
        ) from exc
    if not isinstance(value, int | float | str | bool) and value is not None:
        raise RuleError(f"rule {rule!r}: {ast.unparse(node)!r} is not a number, string or boolean")
    return value


def _parse_args(args: str, rule: str) -> tuple[list[Any], dict[str, Any]]:
    try:
        tree = ast.parse(f"f({args})", mode="eval")
    except SyntaxError as exc:
        raise RuleError(f"rule {rule!r}: cannot read the arguments ({exc.msg})") from exc
    except (ValueError, MemoryError, RecursionError) as exc:  # null bytes, nesting too deep for Python
        raise RuleError(f"rule {rule!r}: cannot read the arguments ({type(exc).__name__})") from exc
    call = tree.body
    # "std=1)(2" or "1), g(2" would close our f( early: the text must be one argument list
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "f"):
        raise RuleError(f"rule {rule!r}: cannot read the arguments (unbalanced parentheses)")
    positional = [_literal(a, rule) for a in call.args]
    keywords: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise RuleError(f"rule {rule!r}: ** is not allowed in arguments")
        if keyword.arg in keywords:
            raise RuleError(f"rule {rule!r}: {keyword.arg} given twice")
        keywords[keyword.arg] = _literal(keyword.value, rule)
    return positional, keywords


def _split_rule(text: str) -> tuple[str, re.Match[str]]:
    # A selector may itself contain '=' (a regex): take the first split whose right side reads as INIT.
    regex_problem: str | None = None
    for index, char in enumerate(text):
        if char == "=":
            match = _INIT_RE.match(text[index + 1 :])
            left = text[:index].strip()
            if not match or not left:
                continue
            if "(" in left and not left.startswith("re:"):
                continue  # the '=' was inside INIT's arguments
            if left.startswith("re:"):
                try:
                    re.compile(left[3:])
                except re.error as exc:
                    regex_problem = f"{left}: bad regular expression: {exc}"
                    continue  # the '=' may be inside the regex
            return text[:index], match
    if regex_problem is not None:
        raise RuleError(f"rule {text!r}: {regex_problem}")
    raise RuleError(f"rule {text!r}: expected SELECTOR=INIT(key=value,...), e.g. *.weight=normal(std=0.01)")


def parse_rule(text: str) -> InitRule:
    """Parse ``SELECTOR=INIT(key=value,...)``; :class:`RuleError` names the rule if it is bad.

    Positional arguments are taken in the order of the initializer's signature
    (``constant(0)`` is ``constant(val=0)``). The initializer itself is checked here for catalogue
    names; custom files are loaded when the rule is planned.
    """
    text = text.strip()
    selector_text, match = _split_rule(text)
    try:
        selector = parse_selector(selector_text)
    except RuleError as exc:
        raise RuleError(f"rule {text!r}: {exc}") from exc
    init = match.group("name").strip()
    positional, keywords = _parse_args(match.group("args") or "", text)
    if not is_custom_reference(init):
        try:
            initializer = get_initializer(init)
        except InitializerError as exc:
            raise RuleError(f"rule {text!r}: {exc}") from exc
        if positional:
            names = [p.name for p in initializer.params]
            if len(positional) > len(names):
                raise RuleError(f"rule {text!r}: {initializer.name} takes at most {len(names)} arguments")
            for name, value in zip(names, positional, strict=False):
                if name in keywords:
                    raise RuleError(f"rule {text!r}: {name} given twice")
                keywords[name] = value
        try:
            initializer.coerce_kwargs(keywords)
        except ValueError as exc:
            raise RuleError(f"rule {text!r}: {exc}") from exc
    elif positional:
        raise RuleError(f"rule {text!r}: give a custom initializer's arguments as key=value")
    return InitRule(text, selector, init, tuple(keywords.items()))


# --- plans ---------------------------------------------------------------------------------


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
        lines = [f"{self.rule.text}: {len(self.hits)} tensor(s)" if self.hits else f"{self.rule.text}: hits nothing"]
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
        return [(rp.rule.text, n, why) for rp in self.rules for n, why in rp.refusals]

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

    def describe(self) -> str:
        return "\n".join(line for rp in self.rules for line in rp.describe())

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
        return f"rule {first_rule!r}: nothing applied, refused for " + "; ".join(parts)


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
    return f"rule {rule_plan.rule.text!r} hits nothing: {hint}"


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
        raise RuleError(f"rule {rule.text!r}: {exc}") from exc
    problem = initializer.request_problem(kwargs)
    if problem is not None:
        raise RuleError(f"rule {rule.text!r}: {problem}")
    targets = resolve_targets(report, rule.selector, model)
    if tensor_of is None:
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        tensor_of = tensors.__getitem__
    hits: list[TensorHit] = []
    rule_plan = RulePlan(rule, initializer, kwargs, hits)
    for name in targets:
        info = report.tensor(name)
        matched = next((a for a in info.aliases if rule.selector.matches(a, report, model)), name)
        hit = TensorHit(name, matched, info.aliases)
        if getattr(initializer, "acts_on_module", False):
            module_name = owner_module_name(name)
            for other in module_tensors(model, module_name):  # lazily opened: values first
                tensor_of(report.alias_to_name.get(other, other))
            module = model.get_submodule(module_name)
            hit.refused = initializer.check_module(module)  # type: ignore[attr-defined]
            if hit.refused is None and module_name not in rule_plan.modules:
                rule_plan.modules.append(module_name)
                for other in module_tensors(model, module_name):
                    canonical = report.alias_to_name.get(other, other)
                    if canonical not in rule_plan.extra:
                        rule_plan.extra.append(canonical)
        else:
            hit.refused = initializer.check(tensor_of(name), kwargs)
        if hit.refused is None:
            _add_fan_note(rule_plan, model, name, tensor_of)
        hits.append(hit)
    return rule_plan


def _add_fan_note(rule_plan: RulePlan, model: nn.Module, name: str, tensor_of: Callable[[str], torch.Tensor]) -> None:
    """Where torch's fan_in/fan_out mislead for this weight (grouped, transposed convs), say so."""
    from paramscope.core.fans import fan_note

    if name.rpartition(".")[2] != "weight":
        return
    try:
        module = model.get_submodule(owner_module_name(name))
    except AttributeError:
        return
    initializer = rule_plan.initializer.name
    note = fan_note(module, tensor_of(name), initializer, rule_plan.kwargs)
    if note is not None:
        rule_plan.notes.append(f"{name}: {note}")


def plan(source: Session | tuple[ModelReport, nn.Module], rules: Sequence[InitRule | str]) -> Plan:
    """Which tensors each rule hits, and which refuse, before anything is applied.

    Args:
        source: a Session, or ``(report, model)``.
        rules: parsed rules or rule texts.
    """
    report, model = (source.report, source.model) if not isinstance(source, tuple) else source
    tensor_of = None if isinstance(source, tuple) else source.editable
    cache = LoadedCustom()
    parsed = [parse_rule(r) if isinstance(r, str) else r for r in rules]
    the_plan = Plan([plan_rule(report, model, r, cache, tensor_of) for r in parsed])
    why = None if isinstance(source, tuple) else source.opened.forward_unavailable
    needy = next((rp for rp in the_plan.rules if rp.initializer.needs_input), None)
    if why and needy is not None:
        raise RuleError(f"rule {needy.rule.text!r}: {needy.initializer.name} needs the model's code to run "
                        f"its forward, and this source has none ({why})")  # fmt: skip
    return the_plan


def fill_input(rules: Sequence[InitRule | str], input_text: str | None) -> list[InitRule]:
    """``rules`` with ``input=input_text`` added to each data-dependent rule (lsuv) that has none.

    Example:
        >>> fill_input(["*.weight=lsuv"], "randn(256,64)")[0].text
        "*.weight=lsuv(input='randn(256,64)')"
    """
    result: list[InitRule] = []
    for rule in rules:
        rule = parse_rule(rule) if isinstance(rule, str) else rule
        kwargs = dict(rule.kwargs)
        needs = not is_custom_reference(rule.init) and get_initializer(rule.init).needs_input
        if needs and input_text and not str(kwargs.get("input") or "").strip():
            kwargs["input"] = input_text
            rule = InitRule.make(rule.selector, rule.initializer or rule.init, **kwargs)
        result.append(rule)
    return result


# --- applying ------------------------------------------------------------------------------


def make_generator(seed: int | None) -> tuple[torch.Generator, int]:
    """A CPU generator seeded with ``seed`` (a fresh random seed if None) and the seed used."""
    generator = torch.Generator()
    if seed is None:
        seed = int(generator.seed())
    else:
        generator.manual_seed(int(seed))
    return generator, int(seed)


def run_rule(rule_plan: RulePlan, tensor_of: Callable[[str], torch.Tensor],
             module_of: Callable[[str], nn.Module], generator: torch.Generator) -> None:  # fmt: skip
    """Apply one planned rule with ``generator`` (tensors in plan order)."""
    initializer = rule_plan.initializer
    if initializer.acts_on_model:
        notes = initializer.apply_model(module_of(""), rule_plan.targets, rule_plan.kwargs, generator)  # type: ignore[attr-defined]
        rule_plan.run_notes = list(notes)
        return
    if getattr(initializer, "acts_on_module", False):
        for module_name in rule_plan.modules:
            initializer.apply_module(module_of(module_name), generator)  # type: ignore[attr-defined]
        return
    for hit in rule_plan.hits:
        initializer.apply(tensor_of(hit.name), rule_plan.kwargs, generator)


class InitCommand(TensorEditCommand):
    """An undoable init of the tensors of one rule, with the Python that replays it.

    Attributes:
        rule_plan: what it does. seed: the request's seed (the rules of one request share one
        generator). index: position of this rule in its request.
        replay_code: Python lines that repeat it on ``model`` (see :mod:`paramscope.core.replay`).
    """

    def __init__(self, session: Session, rule_plan: RulePlan, generator: torch.Generator,
                 seed: int, index: int) -> None:  # fmt: skip
        self.rule_plan = rule_plan
        self.seed = seed
        self.index = index
        names = rule_plan.touched
        model = session.model

        def mutate() -> None:
            run_rule(rule_plan, session.tensor, model.get_submodule, generator)

        def compute(tensor_of: Callable[[str], torch.Tensor]) -> None:
            run_rule(rule_plan, tensor_of, model.get_submodule, generator)

        text = f"init {rule_plan.rule.text}"
        if rule_plan.initializer.takes_generator or rule_plan.modules or isinstance(rule_plan.initializer, CustomInitializer):
            text += f" (seed {seed})"
        # torch.nn.init functions write every element without reading: no copy is needed. They
        # see only the tensor, so they may run on fresh ones off the model (staged); a reset or a
        # user's function may read the live module or global state, and stays on the model.
        torch_init = isinstance(rule_plan.initializer, TorchInitializer)
        targets = [(n, session.tensor(n)) for n in names]
        super().__init__(
            text,
            targets,
            mutate,
            overwrites=torch_init,
            shared=session.shared_storage,
            compute=compute if torch_init else None,
        )

    @functools.cached_property
    def replay_code(self) -> str:  # built when a script is exported, not on every apply
        return replay_code(self.rule_plan, self.seed, first_of_request=self.index == 0)


def replay_code(rule_plan: RulePlan, seed: int, first_of_request: bool) -> str:
    """Python that repeats ``rule_plan``; ``T(name)`` is a tensor, ``model`` the model, ``g`` the generator."""
    lines = [f"# init {rule_plan.rule.text}"]
    if first_of_request:
        lines.append(f"g = torch.Generator().manual_seed({seed})")
    initializer = rule_plan.initializer
    if isinstance(initializer, CustomInitializer):
        source = initializer.source
        if source.kind == "text":
            lines.append(f"custom = custom_from_text({source.location!r}, {source.function!r})")
        elif source.kind == "file":
            lines.append(f"custom = custom_from_file({source.location!r}, {source.function!r})")
        else:
            lines.append(f"custom = custom_from_module({source.location!r}, {source.function!r})")
    if initializer.acts_on_model:
        lines += initializer.replay_model_lines(rule_plan.targets, rule_plan.kwargs)  # type: ignore[attr-defined]
    elif getattr(initializer, "acts_on_module", False):
        for module_name in rule_plan.modules:
            lines += initializer.replay_module_lines(f"model.get_submodule({module_name!r})")  # type: ignore[attr-defined]
    else:
        for hit in rule_plan.hits:
            lines += initializer.replay_lines(f"T({hit.name!r})", rule_plan.kwargs)
    return "\n".join(lines)


def _checked_plan(session: Session, rules: Sequence[InitRule | str], skip_refused: bool) -> Plan:
    the_plan = plan(session, rules)
    for message in check_unmatched(the_plan, session.report, skip_refused):
        warnings.warn(message, UnmatchedRuleWarning, stacklevel=3)
    if skip_refused:
        the_plan.skipped = the_plan.drop_refused()
    if not the_plan.ok:
        raise RefusedError(the_plan.refusal_message(), the_plan)
    return the_plan


def build_commands(session: Session, rules: Sequence[InitRule | str], seed: int | None = None,
                   skip_refused: bool = False) -> tuple[Plan, list[InitCommand]]:  # fmt: skip
    """Plan ``rules`` and build their commands (not yet executed).

    Raises:
        RuleError: a bad rule. RefusedError: some target refuses (its ``plan`` says which).
    """
    the_plan = _checked_plan(session, rules, skip_refused)
    generator, used_seed = make_generator(seed)
    effective = [rp for rp in the_plan.rules if rp.hits]  # a rule that hits nothing changes nothing
    commands = [
        InitCommand(session, rule_plan, generator, used_seed, index)
        for index, rule_plan in enumerate(effective)
    ]
    return the_plan, commands


def apply_rules(session: Session, rules: Sequence[InitRule | str], seed: int | None = None,
                skip_refused: bool = False) -> list[Command]:  # fmt: skip
    """Apply ``rules`` in order through ``session.execute`` (one undoable command per rule).

    All or nothing: every target is checked first; if any refuses, nothing is applied and
    :class:`RefusedError` names each refused tensor and why (with ``skip_refused`` the refused
    tensors are left out and the others applied). If a rule fails while running, the rules
    already applied are undone.

    Example:
        >>> apply_rules(session, ["*.weight=normal(std=0.01)", "*.bias=constant(val=0)"], seed=0)
    """
    _, commands = build_commands(session, rules, seed, skip_refused)
    done: list[Command] = []
    for command in commands:
        try:
            session.execute(command)
        except ParamscopeError:
            _undo_all(session, done)
            raise
        except Exception as exc:
            _undo_all(session, done)
            raise RuleError(f"{command.text}: {type(exc).__name__}: {exc}") from exc
        done.append(command)
    return done


def _undo_all(session: Session, done: list[Command]) -> None:
    for _ in done:
        session.undo()


def preview_rules(session: Session, rules: Sequence[InitRule | str], seed: int | None = None,
                  skip_refused: bool = False) -> tuple[Plan, dict[str, torch.Tensor]]:  # fmt: skip
    """The tensors ``rules`` would produce, computed on copies; the model is not touched.

    With the same seed the preview is bit-identical to what :func:`apply_rules` writes.
    """
    import copy

    the_plan = _checked_plan(session, rules, skip_refused)
    generator, _ = make_generator(seed)
    copies: dict[str, torch.Tensor] = {}

    def tensor_of(name: str) -> torch.Tensor:
        if name not in copies:
            copies[name] = session.tensor(name).detach().clone()
        return copies[name]

    def module_of(module_name: str) -> nn.Module:
        original = session.model.get_submodule(module_name)
        try:
            module = copy.deepcopy(original)
        except Exception as exc:  # e.g. it keeps a tensor with a grad_fn (a cached activation)
            where = module_name or "(root)"
            raise RuleError(
                f"cannot preview reset_parameters() of {where}: the module cannot be copied "
                f"({type(exc).__name__}: {exc}); Apply still works and can be undone"
            ) from exc
        # After the copy is reset, read its tensors back under the model's canonical names.
        pending.append((module_name, module, original))
        return module

    pending: list[tuple[str, nn.Module, nn.Module]] = []
    with torch.no_grad():
        for rule_plan in the_plan.rules:
            run_rule(rule_plan, tensor_of, module_of, generator)
            for module_name, module, _original in pending:
                prefix = f"{module_name}." if module_name else ""
                named = list(module.named_parameters()) + list(module.named_buffers())
                for local, tensor in named:
                    copies[session.canonical(prefix + local)] = tensor.detach().clone()
            pending.clear()
    return the_plan, copies
