"""Files: open checkpoints safely, export state_dicts, check that weights fit a model.

:func:`paramscope.core.sources.sources.open_source` opens file and folder sources through
:func:`readers.open_file`.
"""

from __future__ import annotations

from paramscope.core.files.readers import open_file, read_checkpoint, state_dict_of
from paramscope.core.files.safety import UntrustedFileError

__all__ = [
    "UntrustedFileError",
    "open_file",
    "read_checkpoint",
    "state_dict_of",
]
