"""The one way the package compiles its loops: numba, releasing the GIL (the land-use prefetch runs
them in background threads), and cached beside the sources or in ``NUMBA_CACHE_DIR`` so that a
machine compiles them once. Where no cache location is writable (a read-only install and no
writable home), each process compiles them instead of failing to import."""
from __future__ import annotations

import numba


def kernel(function):
    """``function`` compiled in nopython mode."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)
