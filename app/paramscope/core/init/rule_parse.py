"""Rule texts ``SELECTOR=INIT(key=value,...)`` parsed into :class:`InitRule`, never evaluated.

INIT is a ``torch.nn.init`` name with or without the trailing underscore, ``default``
(``reset_parameters()`` of the owning module), ``lsuv``, or ``file.py:function`` /
``package.module:function``. Arguments are numbers, strings or booleans, parsed with :mod:`ast`
and never evaluated; positional ones are taken in the order of the initializer's signature.

Example:
    >>> rule = parse_rule("*.weight=normal(mean=0,std=0.01)")
    >>> rule.init, dict(rule.kwargs)
    ('normal', {'mean': 0, 'std': 0.01})
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from paramscope.core.edit.replay import format_value
from paramscope.core.errors import RuleError
from paramscope.core.init.custom_init import LoadedCustom, is_custom_reference
from paramscope.core.init.initializer_base import Initializer, InitializerError
from paramscope.core.init.initializers import get_initializer
from paramscope.core.init.selectors import Selector, parse_selector


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

    @property
    def label(self) -> str:
        """What a user reads: :attr:`text` with a long list of names shortened (the text itself,
        which repeats exactly, stays whole)."""
        selector = self.selector.text
        return self.selector.label + self.text[len(selector):] if self.text.startswith(selector) else self.text

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


def parse_arguments(args: str, rule: str) -> tuple[list[Any], dict[str, Any]]:
    """``1, std=0.5`` -> positional and keyword literals (presets read theirs with it too)."""
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
    positional, keywords = parse_arguments(match.group("args") or "", text)
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
