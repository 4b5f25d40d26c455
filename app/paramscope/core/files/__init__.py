"""Files: open checkpoints safely, export state_dicts, load weights, diff.

:func:`paramscope.core.sources.open_source` opens file and folder sources through
:func:`readers.open_file`.
"""

from __future__ import annotations

from paramscope.core.files.load_weights import (
    WeightsReport,
    apply_weights,
    compare_weights,
    load_weights_into,
    read_weights,
)
from paramscope.core.files.readers import open_file, read_checkpoint, state_dict_of
from paramscope.core.files.safety import UntrustedFileError

__all__ = [
    "UntrustedFileError",
    "WeightsReport",
    "apply_weights",
    "compare_weights",
    "load_weights_into",
    "open_file",
    "read_checkpoint",
    "read_weights",
    "state_dict_of",
]
