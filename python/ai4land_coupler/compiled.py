"""The one way the package compiles its loops: numba, releasing the GIL (the land-use prefetch runs
them in background threads), and cached beside the sources or in ``NUMBA_CACHE_DIR`` so that a
machine compiles them once. Where no cache location is writable (a read-only install and no
writable home), each process compiles them instead of failing to import.

:func:`in_blocks` runs a kernel over blocks of independent work items on as many threads as torch
has, the caller among them, on torch's own OpenMP threads where it can (:func:`openmp`).

:func:`borrowed` and :func:`keep_alive` take the reference counting out of a kernel's loops: numba
counts every array it binds to a name (an inlined piece's arguments, a tuple's fields) with an
atomic add, and threads counting the same shared arrays fight over one cache line."""
from __future__ import annotations

import ctypes
import functools
import itertools
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic


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
    thread (one thread without torch in the process) that the calling thread and the other threads
    take in turn (kernels release the GIL). The items must be independent (each computed alone,
    written to its own place), so that the cut changes no bit.

    The other threads are torch's own OpenMP threads where torch runs on GNU OpenMP
    (:func:`openmp`): right after a forward pass they are still spinning for the next parallel
    region and take the first blocks at once, and the process keeps one pool of threads. Elsewhere
    they are a pool of Python threads, and the calling thread never waits for one that has not
    started (torch's threads may hold the cores for a few milliseconds after a forward)."""
    torch = sys.modules.get("torch")
    threads = max(1, min(torch.get_num_threads() if torch else 1, items))
    if threads == 1:
        work(*args, 0, items)
        return
    blocks = min(items, BLOCKS_PER_THREAD * threads)
    edges = [items * b // blocks for b in range(blocks + 1)]
    taken = itertools.count()  # next() is atomic under the GIL
    failures = []

    def drain():
        try:
            while not failures and (block := next(taken)) < blocks:
                work(*args, edges[block], edges[block + 1])
        except BaseException as error:  # noqa: BLE001 - raised in the caller, once every thread is done
            failures.append(error)

    runtime = openmp()
    if runtime is not None and not runtime.omp_in_parallel():
        callback = _OPENMP_TASK(lambda _: drain())
        runtime.GOMP_parallel(callback, None, threads, 0)
    else:
        helpers = [_pool(threads - 1).submit(drain) for _ in range(threads - 1)]
        drain()
        for job in helpers:
            if not job.cancel():
                job.result()
    if failures:
        raise failures[0]


_OPENMP_TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def openmp() -> ctypes.CDLL | None:
    """The GNU OpenMP runtime that torch runs on, once torch has loaded one (its Linux wheels
    bundle ``libgomp.so.1``), else None. Looked up by its soname among the loaded libraries only:
    nothing is loaded."""
    if "torch" in sys.modules:
        return _loaded_openmp()
    return None


@functools.lru_cache(maxsize=None)
def _loaded_openmp() -> ctypes.CDLL | None:
    try:
        runtime = ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LOCAL)
        runtime.GOMP_parallel.argtypes = [_OPENMP_TASK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        runtime.GOMP_parallel.restype = None
        runtime.omp_in_parallel.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return runtime


BLOCKS_PER_THREAD = 4


@kernel
def _zero_rows(array, first, end):
    array[first:end] = 0.0


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    """``np.zeros(shape)`` (float64), written by the kernel threads, each a block of rows: a big
    array costs the time its memory takes to write, and two cores write faster than one."""
    out = np.empty(shape)
    in_blocks(_zero_rows, shape[0], out)
    return out


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


def _borrow(context, builder, typ, value):
    if isinstance(typ, types.Array):
        source = context.make_array(typ)(context, builder, value=value)
        copy = context.make_array(typ)(context, builder)
        for field in ("nitems", "itemsize", "data", "shape", "strides"):
            setattr(copy, field, getattr(source, field))
        copy.meminfo = cgutils.get_null_value(copy.meminfo.type)  # no owner: nothing to count
        copy.parent = cgutils.get_null_value(copy.parent.type)
        return copy._getvalue()
    if isinstance(typ, types.BaseTuple):
        items = [_borrow(context, builder, t, builder.extract_value(value, i)) for i, t in enumerate(typ)]
        return context.make_tuple(builder, typ, items)
    context.nrt.incref(builder, typ, value)  # anything else: a new reference, as numba expects
    return value


@intrinsic
def borrowed(typingctx, value):
    """In a kernel: ``value`` (an array, or a tuple of arrays and scalars) as arrays that own
    nothing, so that numba counts no references to them. They stay valid while the originals
    live: the kernel's arguments for the whole call, an array the kernel made until
    :func:`keep_alive` of it."""
    def codegen(context, builder, signature, args):
        return _borrow(context, builder, signature.args[0], args[0])
    return value(value), codegen


@intrinsic
def keep_alive(typingctx, value):
    """In a kernel: a use of ``value`` that keeps it, and so what :func:`borrowed` made of it, alive
    until here."""
    def codegen(context, builder, signature, args):
        return context.get_dummy_value()
    return types.none(value), codegen


@functools.lru_cache(maxsize=None)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ai4land-kernels")
