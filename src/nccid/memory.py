"""Giving a process's free memory back to the system after a large piece of work (a large
sheet read, a large instance received): glibc keeps freed memory in pieces no new allocation
may fit, so a process that once held a gigabyte kept it. Pure: no Django."""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_trim = _malloc_trim()


def give_memory_back() -> None:
    """Hand the C heap's free pages back to the system (every thread's arena), where the C
    library can (glibc); elsewhere nothing."""
    if _trim is not None:
        _trim(0)
