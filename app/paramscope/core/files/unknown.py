"""Inert stand-ins for the user's own classes inside a checkpoint (hyper-parameters, configs).

A Lightning ``.ckpt`` keeps the training script's dataclasses, Paths and Namespaces beside the
weights. ``torch.load(weights_only=True)`` refuses the whole file for them. Here each such class
becomes a fresh :class:`UnknownObject` subclass registered under the class's name for that one
load: the pickle's constructor calls, ``__reduce__`` results and state only record data in the
stand-in. Nothing of the real class is imported or run; torch still refuses the modules it
blocks (``os``, ``sys``, ...).
"""

from __future__ import annotations

from typing import Any


class UnknownObject:
    """An object of a class that was not loaded: what the pickle gave it, kept as data."""

    qualified_name = "?"  # set on each subclass: "train.Config"

    args: tuple[Any, ...]
    state: Any
    items: dict[Any, Any]
    values: list[Any]

    # The pickle makes objects through __new__ alone (NEWOBJ) or by calling the class (REDUCE).
    def __new__(cls, *args: Any, **kwargs: Any) -> UnknownObject:
        made = super().__new__(cls)
        made.args, made.state, made.items, made.values = args, kwargs or None, {}, []
        return made

    def __call__(self, *args: Any, **kwargs: Any) -> UnknownObject:
        return type(self)(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.values.append(value)

    def extend(self, values: Any) -> None:
        self.values.extend(values)

    def describe(self) -> str:
        return f"{self.qualified_name} (not loaded: its code is never run)"

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


def placeholders(names: list[str]) -> list[tuple[type, str]]:
    """``(stand-in class, "module.Name")`` pairs for ``torch.serialization.safe_globals``."""
    made = []
    for name in names:
        cls = type(name.rpartition(".")[2] or "Unknown", (UnknownObject,), {"qualified_name": name})
        made.append((cls, name))
    return made


def stand_in_names(obj: Any, limit: int = 1_000_000) -> list[str]:
    """The class names of the stand-ins inside ``obj`` (containers walked, tensors skipped)."""
    found: dict[str, None] = {}
    seen: set[int] = set()
    todo = [obj]
    while todo and len(seen) < limit:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, UnknownObject):
            found[item.qualified_name] = None
            todo += [item.args, item.state, item.values, item.items]
        elif isinstance(item, dict):
            todo += list(item.keys()) + list(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            todo += list(item)
    return list(found)
