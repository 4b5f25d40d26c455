"""TorchScript and torch.export archives: both carry code, so both need the user's trust.

``torch.jit.load`` compiles the archive's TorchScript code; ``torch.export.load`` unpickles parts
of a ``.pt2`` archive with ``weights_only=False`` (checked on torch 2.13). Neither is opened
without consent.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from paramscope.core.files.safety import UntrustedFileError, bad_file, first_line
from paramscope.core.files.sniff import Sniffed

TORCHSCRIPT_RISK = "a TorchScript archive carries code that is compiled and run when the model is used"
PT2_RISK = "torch.export.load unpickles parts of a .pt2 archive unsafely, which can run arbitrary code"


def load_torchscript(sniffed: Sniffed, trust: bool) -> nn.Module:
    path = sniffed.path
    if not trust:
        raise UntrustedFileError(path, TORCHSCRIPT_RISK, "it is a TorchScript archive")
    try:
        with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; still worth opening
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError with C++ traces
        raise bad_file(path, f"cannot be loaded as TorchScript: {first_line(exc)}") from None


def load_exported(sniffed: Sniffed, trust: bool) -> nn.Module:
    path = sniffed.path
    if not trust:
        raise UntrustedFileError(path, PT2_RISK, "it is a torch.export (.pt2) archive")
    try:
        program = torch.export.load(str(path))
        return program.module()
    except Exception as exc:
        raise bad_file(path, f"cannot be loaded as a torch.export archive: {first_line(exc)}") from None
