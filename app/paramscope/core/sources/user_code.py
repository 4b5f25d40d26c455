"""Running the user's own Python (a model class, a custom initializer) on purpose.

``file.py:NAME`` sources and custom initializers both run a file the user named. The file is
imported under a stable private module name and registered in ``sys.modules`` so that classes it
defines can be found again (dataclasses, pickling).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from paramscope.core.errors import ParamscopeError, shown


class UserCodeError(ParamscopeError):
    """The user's file could not be found, loaded or run."""


def run_python_file(path: Path, prefix: str = "paramscope_user") -> ModuleType:
    """Import ``path`` as a module and return it.

    Raises:
        UserCodeError: no such file, not loadable as Python, or running it raised (one line
            naming the file and the exception).
    """
    if not path.is_file():
        raise UserCodeError(f"{shown(str(path))}: no such file")
    module_name = f"{prefix}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"{path}: cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise UserCodeError(f"{path}: running it failed: {type(exc).__name__}: {exc}") from exc
    return module
