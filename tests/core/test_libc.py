"""C library functions are found with their types declared; a missing one is None, not an error."""

from __future__ import annotations

import ctypes

from paramscope.core import libc


def test_memcmp_compares_bytes() -> None:
    memcmp = libc.function("memcmp", (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t))
    assert memcmp is not None
    a, b, c = (ctypes.create_string_buffer(v) for v in (b"same", b"same", b"diff"))
    assert memcmp(ctypes.addressof(a), ctypes.addressof(b), 4) == 0
    assert memcmp(ctypes.addressof(a), ctypes.addressof(c), 4) != 0


def test_a_function_the_library_lacks_is_none() -> None:
    assert libc.function("paramscope_no_such_function", (ctypes.c_int,)) is None
