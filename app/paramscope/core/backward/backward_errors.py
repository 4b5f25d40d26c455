"""The errors a backward run raises, and how an exception it caught is quoted in them."""

from __future__ import annotations

from paramscope.core.errors import ParamscopeError


class BackwardError(ParamscopeError):
    """Backward could not run; the model and its gradients are as they were."""


class BackwardUnavailable(BackwardError):
    """The source has no forward (e.g. a bare state_dict)."""


class ForwardError(BackwardError):
    """The forward raised; ``module`` is the innermost module that was running."""

    def __init__(self, message: str, module: str, type_name: str, original: BaseException) -> None:
        super().__init__(message)
        self.module = module
        self.type_name = type_name
        self.original = original


class StaleGradientError(BackwardError):
    """A gradient (or weight) changed in place before this result's summary of it was read."""



def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc``'s message on one line, at most ``limit`` characters (its type when it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
