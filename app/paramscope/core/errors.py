"""Errors the user sees as one line: they name the file or spec and the problem."""

from __future__ import annotations


class ParamscopeError(Exception):
    """An expected failure with a message fit to show a user as it is."""


class SourceError(ParamscopeError):
    """A source string or file could not be opened."""


class Cancelled(ParamscopeError):
    """Long work was cancelled by the user."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)
