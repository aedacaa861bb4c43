"""The one way the package compiles its loops: numba, releasing the GIL (the land-use prefetch runs
them in background threads), and cached beside the sources or in ``NUMBA_CACHE_DIR`` so that a
machine compiles them once. Where no cache location is writable (a read-only install and no
writable home), each process compiles them instead of failing to import.

:func:`in_blocks` runs a kernel over blocks of independent work items on as many threads as torch
has."""
from __future__ import annotations

import functools
import sys
from concurrent.futures import ThreadPoolExecutor

import numba


def kernel(function):
    """``function`` compiled in nopython mode."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


def in_blocks(work, items: int, *args) -> None:
    """``work(*args, first, end)`` over the items [0, items) cut into one block per torch thread
    (one without torch in the process), run side by side (kernels release the GIL). The items must
    be independent (each computed alone, written to its own place), so that the cut changes no bit."""
    torch = sys.modules.get("torch")
    blocks = max(1, min(torch.get_num_threads() if torch else 1, items))
    if blocks == 1:
        work(*args, 0, items)
        return
    edges = [items * b // blocks for b in range(blocks + 1)]
    pool = _pool(blocks)
    for job in [pool.submit(work, *args, first, end) for first, end in zip(edges[:-1], edges[1:])]:
        job.result()


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ai4land-kernels")
