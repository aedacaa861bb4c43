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
import numpy as np


def kernel(function=None, *, inline: bool = False):
    """``function`` compiled in nopython mode; ``inline=True`` for a small helper called per pixel,
    which is then compiled into each caller (a call costs more than such a helper's work)."""
    if function is None:
        return functools.partial(kernel, inline=inline)
    options = {"nogil": True, "inline": "always" if inline else "never"}
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(**options)(function)


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


def output_array(out: np.ndarray | None, shape: tuple[int, int, int], dtype=np.float32) -> np.ndarray:
    """The array a kernel writes a (C, H, W) result into: ``out`` itself when it is a C-ordered
    array of ``dtype`` with C channels and at least H rows and W columns (the result goes into
    its leading corner, ``out[:, :H, :W]``), or a new one when ``out`` is None."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if (not isinstance(out, np.ndarray) or out.dtype != dtype or not out.flags.c_contiguous or out.ndim != 3
            or out.shape[0] != shape[0] or out.shape[1] < shape[1] or out.shape[2] < shape[2]):
        raise ValueError(f"out must be a C-ordered {np.dtype(dtype).name} array of {shape[0]} channels and at least "
                         f"{shape[1]}x{shape[2]} cells, got {getattr(out, 'shape', type(out))}")
    return out


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ai4land-kernels")
