"""Files: open checkpoints safely, export state_dicts, load weights, diff.

Importing this package registers :func:`readers.open_file` with
:func:`paramscope.core.sources.register_file_opener`.
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
from paramscope.core.sources import register_file_opener

register_file_opener(open_file)

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
