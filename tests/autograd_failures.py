"""An autograd function whose backward fails: for tests of what a failed backward leaves behind.

Importable from every test folder: pytest puts ``tests/`` (where the root conftest lives) on the path.
"""

from __future__ import annotations

import torch


class FailsInBackward(torch.autograd.Function):
    """Identity forward; backward raises ``RuntimeError("simulated failure in backward")``."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def, override]
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        raise RuntimeError("simulated failure in backward")
