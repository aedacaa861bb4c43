"""The one way the package compiles its loops: numba, releasing the GIL (the land-use prefetch runs
them in background threads), and cached beside the sources or in ``NUMBA_CACHE_DIR`` so that a
machine compiles them once. Where no cache location is writable (a read-only install and no
writable home), each process compiles them instead of failing to import.

:func:`in_blocks` runs a kernel over blocks of independent work items on as many threads as torch
has, the caller among them."""
from __future__ import annotations

import functools
import itertools
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
    """``work(*args, first, end)`` over the items [0, items), cut into up to four blocks per torch
    thread (one thread without torch in the process) that the calling thread and the pool's
    workers take in turn (kernels release the GIL). The calling thread never waits for a worker
    that has not started: right after a forward pass, torch's OpenMP threads may hold the other
    cores for a few milliseconds, and the caller then does the work alone. The items must be
    independent (each computed alone, written to its own place), so that the cut changes no bit."""
    torch = sys.modules.get("torch")
    threads = max(1, min(torch.get_num_threads() if torch else 1, items))
    if threads == 1:
        work(*args, 0, items)
        return
    blocks = min(items, BLOCKS_PER_THREAD * threads)
    edges = [items * b // blocks for b in range(blocks + 1)]
    taken = itertools.count()  # next() is atomic under the GIL

    def drain():
        while (block := next(taken)) < blocks:
            work(*args, edges[block], edges[block + 1])

    helpers = [_pool(threads - 1).submit(drain) for _ in range(threads - 1)]
    try:
        drain()
    finally:
        for job in helpers:
            if not job.cancel():
                job.result()


BLOCKS_PER_THREAD = 4


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ai4land-kernels")
