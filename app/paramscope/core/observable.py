"""Qt-free state objects whose fields tell listeners when they change (glue's ``State`` style).

A panel's settings live in a :class:`State` subclass: the logic reads the state (so it runs and
is tested without Qt, and the Python API can drive it too), and widgets only bind to it, each
writing its field when edited and showing the field when it changes.

Example:
    >>> class Form(State):
    ...     seed = Field("")
    >>> form, seen = Form(), []
    >>> form.add_callback("seed", seen.append)
    >>> form.seed = "7"; form.seed = "7"  # a second equal value tells nobody
    >>> seen
    ['7']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")
Listener = Callable[[str, Any], None]


def same(a: Any, b: Any) -> bool:
    """Equal values of one type (NaN is the same as NaN: setting it again is no news)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, dict):  # an initializer's arguments
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


class Field(Generic[T]):
    """A state attribute: setting a different value calls the state's listeners.

    ``default_factory`` gives each state its own mutable default (a dict of arguments).
    Replace a mutable value rather than changing it in place, or nobody hears of it.
    """

    def __init__(self, default: T | None = None, *, default_factory: Callable[[], T] | None = None) -> None:
        self.default = default
        self.default_factory = default_factory
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Field[T]: ...
    @overload
    def __get__(self, obj: State, objtype: type | None = None) -> T: ...
    def __get__(self, obj: State | None, objtype: type | None = None) -> T | Field[T]:
        if obj is None:
            return self
        values = obj.__dict__.setdefault("_values", {})
        if self.name not in values:
            values[self.name] = self.default_factory() if self.default_factory is not None else self.default
        return values[self.name]

    def __set__(self, obj: State, value: T) -> None:
        old = self.__get__(obj)
        obj.__dict__["_values"][self.name] = value
        if not same(old, value):
            obj._changed(self.name, value)


class State:
    """Fields declared with :class:`Field`, and the listeners that hear when one changes."""

    def __init__(self, **values: Any) -> None:
        self._listeners: list[Listener] = []
        for name, value in values.items():
            if name not in self.field_names():
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
            setattr(self, name, value)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Field):
                    names[name] = None
        return tuple(names)

    def as_dict(self) -> dict[str, Any]:
        """Every field's value, by name (what a request made from this state depends on)."""
        return {name: getattr(self, name) for name in self.field_names()}

    def add_listener(self, listener: Listener) -> None:
        """``listener(name, value)`` runs after any field changes."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def add_callback(self, name: str, callback: Callable[[Any], None]) -> Listener:
        """``callback(value)`` runs after field ``name`` changes; returns the listener to remove."""
        if name not in self.field_names():
            raise TypeError(f"{type(self).__name__} has no field {name!r}")

        def listener(changed: str, value: Any) -> None:
            if changed == name:
                callback(value)

        self.add_listener(listener)
        return listener

    def _changed(self, name: str, value: Any) -> None:
        for listener in list(self.__dict__.get("_listeners", ())):
            listener(name, value)
