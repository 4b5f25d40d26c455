"""The few C library calls Python has no binding for (memcmp, madvise, sync_file_range).

One place loads the library and declares each function's types, so callers only ask for a
function and get None where this system has none.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        return ctypes.cdll.msvcrt if os.name == "nt" else ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


@functools.cache
def function(
    name: str, argtypes: tuple[type, ...], restype: type = ctypes.c_int
) -> Callable[..., int] | None:
    """The C library's ``name`` with these argument and result types, or None if it lacks it.

    Example:
        >>> memcmp = function("memcmp", (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t))
    """
    library = _library()
    try:
        call = getattr(library, name) if library is not None else None
    except AttributeError:
        return None
    if call is None:
        return None
    call.argtypes = list(argtypes)
    call.restype = restype
    return call
