"""Errors the user sees as one line: they name the file or spec and the problem."""

from __future__ import annotations

from collections.abc import Sequence


class ParamscopeError(Exception):
    """An expected failure with a message fit to show a user as it is: always one line."""

    def __str__(self) -> str:
        # Messages often quote other exceptions, which may span lines; the user sees one.
        return " ".join(super().__str__().split())


class SourceError(ParamscopeError):
    """A source string or file could not be opened."""


class NotInFiles(SourceError):
    """A lazily opened source's loader was asked for a tensor its files do not hold: a buffer a
    model built from its config computes when built (a rotary table), which was built shape-only."""

    def __init__(self, path: object, name: str) -> None:
        super().__init__(f"{path}: holds no tensor {name!r}")


class RuleError(ParamscopeError):
    """An init rule that cannot be parsed or applied; the message names the rule."""


class Cancelled(ParamscopeError):
    """Long work was cancelled by the user."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


SHOWN_NAMES = 3  # names a label spells out; the rest are counted


def listed(names: Sequence[str], separator: str = ", ", count: int = SHOWN_NAMES) -> str:
    """``a, b, c and 99,997 more``: a list of names short enough to read and to lay out (a label
    holding 100,000 names froze the window for seconds on every resize)."""
    head = separator.join(names[:count])
    return head if len(names) <= count else f"{head} and {len(names) - count:,} more"


def shown(text: str) -> str:
    """``text`` as it can stand in a one-line message (control characters escaped)."""
    return text if text.isprintable() else repr(text)[1:-1]
