"""Selectors: which tensors a rule hits, matched against every name of a tensor.

A tied parameter is hit through any of its names, and listed once under its canonical name.

- a glob on the whole qualified name (``fnmatchcase``): ``*.weight``, ``0.*``, ``*``; not a
  prefix match: on an LSTM ``*.bias`` does not hit ``lstm.bias_ih_l0``;
- ``re:REGEX`` (``re.search`` on the qualified name);
- ``type:Linear``: tensors whose owning module is a ``Linear`` (or a subclass); ``type:*Norm*``
  (a glob on the class names): every normalization layer, ``LayerNorm``, ``RMSNorm``,
  ``LlamaRMSNorm``, ``GroupNorm``, ``BatchNorm2d``, ...; in a checkpoint without code, the class
  its tensors show a container was (``RMSNorm(16)``, see :mod:`paramscope.core.files.infer_types`);
- ``weights`` / ``biases``: the tutorial's ``'weight' in name`` on the local name;
- exact names (the GUI's selection, :meth:`Selector.of_names`).
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from torch import nn

from paramscope.core.errors import RuleError, listed
from paramscope.core.files.infer_types import kind_of
from paramscope.core.model.report import ModelReport, walk_modules


def owner_module_name(tensor_name: str) -> str:
    """The qualified name of the module that owns ``tensor_name`` (``""``: the root)."""
    return tensor_name.rpartition(".")[0]


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

    @property
    def label(self) -> str:
        """What a user reads: :attr:`text`, a long list of names shortened."""
        return listed(self.names) if self.kind == "names" else self.text

    @cached_property
    def _name_set(self) -> frozenset[str]:
        # A tuple's ``in`` made planning a rule over 100,000 selected names quadratic (minutes).
        return frozenset(self.names)

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
            return alias in self._name_set
        if self.kind == "type":
            owner = owner_module_name(alias)
            if model is not None:
                try:
                    module = model.get_submodule(owner)
                except AttributeError:
                    return False
                return any(fnmatch.fnmatchcase(cls.__name__, self.pattern) for cls in type(module).__mro__)
            info = report.modules.get(owner)
            return info is not None and fnmatch.fnmatchcase(info.type_name, self.pattern)
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
        if not re.fullmatch(r"[A-Za-z_*?][A-Za-z0-9_*?]*", pattern):
            raise RuleError(f"{text}: a module type is a class name such as Linear, or a glob of one such as *Norm*")
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
    if selector.kind == "names":  # the GUI's selection: looked up, not matched against every name
        return _named_targets(report, selector.names)
    tables = [report.parameters]
    if include_buffers:
        tables.append(report.buffers)
    if selector.kind == "type":  # each module looked at once, not fetched once per tensor
        owners = modules_of_type(selector.pattern, report, model)
        return [
            info.name
            for table in tables
            for info in table.values()
            if any(owner_module_name(alias) in owners for alias in info.aliases)
        ]
    return [
        info.name
        for table in tables
        for info in table.values()
        if any(selector.matches(alias, report, model) for alias in info.aliases)
    ]


def modules_of_type(pattern: str, report: ModelReport, model: nn.Module | None = None) -> set[str]:
    """Names of the modules whose class, or a base class, ``pattern`` (a glob) matches, as
    ``type:`` selectors match them; from the report's type names when there is no model.

    One pass over the modules, each class matched once: fetching each tensor's module by its
    name (``get_submodule``) took 6 s for a preset's rules on 94,000 tensors.
    """
    found = {name for name, info in report.modules.items() if _inferred_matches(info.inferred_type, pattern)}
    if model is None:
        return found | {name for name, info in report.modules.items() if fnmatch.fnmatchcase(info.type_name, pattern)}
    matching: dict[type, bool] = {}
    for name, module in walk_modules(model):
        kind = type(module)
        if kind not in matching:
            matching[kind] = any(fnmatch.fnmatchcase(cls.__name__, pattern) for cls in kind.__mro__)
        if matching[kind]:
            found.add(name)
    return found


def _inferred_matches(inferred: str | None, pattern: str) -> bool:
    """A checkpoint's container (no code) matches by the class its tensors show it was: its
    ``RMSNorm(16)`` gains are a norm's, which presets set to one, not weights drawn N(0, 0.02)."""
    return inferred is not None and any(fnmatch.fnmatchcase(kind, pattern) for kind in kind_of(inferred).split(" or "))


def _named_targets(report: ModelReport, names: Sequence[str]) -> list[str]:
    """The canonical names of ``names`` (any alias), each once, parameters then buffers in report order."""
    unknown = [n for n in names if n not in report.alias_to_name]
    if unknown:
        raise RuleError(f"no tensor named {unknown[0]!r}")
    return sorted({report.alias_to_name[n] for n in names}, key=report.order.__getitem__)


def weights_and_biases(report: ModelReport, names: Sequence[str], weights: bool = True,
                       biases: bool = True) -> list[str]:  # fmt: skip
    """``names`` narrowed by the ``weights`` / ``biases`` selectors (any alias counts).

    Both: every name, also those that are neither (a ``scale``); neither: none. The Initialize
    panel's two check boxes (:meth:`~paramscope.core.state.init_state.InitState.kept_kinds`).

    Example:
        >>> weights_and_biases(report, ["0.weight", "0.bias"], biases=False)
        ['0.weight']
    """
    if weights and biases:
        return list(names)
    kinds = [Selector(kind) for kind, on in (("weights", weights), ("biases", biases)) if on]
    return [
        name
        for name in names
        if any(kind.matches(alias, report) for kind in kinds for alias in report.tensor(name).aliases)
    ]
