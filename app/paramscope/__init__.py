"""paramscope: a desktop explorer for the parameters of PyTorch models.

The heavy parts (torch, Qt) are imported lazily so that ``paramscope --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from paramscope.core.model.report import ModelReport


def report(model: Any) -> ModelReport:
    """Build the Qt-free report (tree, parameters, buffers, ties, unregistered tensors) of a module."""
    from paramscope.core.model.report import build_report

    return build_report(model)


def explore(model: Any, inputs: Any = None) -> Any:
    """Open the paramscope window on a live ``nn.Module`` in this process (edits change it)."""
    from paramscope.gui.app.explore import explore as _explore

    return _explore(model, inputs)


__all__ = ["__version__", "explore", "report"]
