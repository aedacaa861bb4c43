"""compiled.in_blocks: every item once, on the caller and torch's OpenMP threads or, without them, a
pool of Python threads that it never waits for while busy."""
import ctypes
import sys
import threading
import time

import numpy as np
import pytest
import torch

from ai4land_coupler import compiled
from ai4land_coupler.compiled import borrowed, in_blocks, keep_alive, kernel


@kernel
def _count(hits, first, end):
    for i in range(first, end):
        hits[i] += 1


@pytest.fixture(params=["openmp", "python threads"])
def threads_of(request, monkeypatch):
    """in_blocks on torch's OpenMP threads, then on its pool of Python threads."""
    if request.param == "python threads":
        monkeypatch.setattr(compiled, "openmp", lambda: None)
    return request.param


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torch's Linux wheels bundle GNU OpenMP")
def test_torch_runs_on_the_gnu_openmp_that_in_blocks_uses():
    runtime = compiled.openmp()
    assert runtime is not None
    runtime.omp_get_max_threads.restype = ctypes.c_int
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert runtime.omp_get_max_threads() == 3  # the same runtime: torch's setting shows in it
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("items", [1, 2, 7, 100])
def test_every_item_is_worked_once(threads, items, threads_of, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    hits = np.zeros(items, np.int64)
    in_blocks(_count, items, hits)
    assert hits.tolist() == [1] * items


def test_the_blocks_are_shared_among_the_threads(threads_of, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    workers = [set() for _ in range(8)]

    def work(first, end):  # sleeping releases the GIL, as the compiled kernels do
        time.sleep(0.02)
        workers[first].add(threading.get_ident())
    in_blocks(work, 8)
    assert all(len(w) == 1 for w in workers)
    assert len(set.union(*workers)) == 2


def test_the_caller_does_the_work_when_the_pool_is_busy(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(compiled, "openmp", lambda: None)
    release = threading.Event()
    busy = compiled._pool(1).submit(release.wait, 30)  # the pool's one worker, held
    try:
        hits = np.zeros(50, np.int64)
        done = threading.Event()
        caller = threading.Thread(target=lambda: (in_blocks(_count, 50, hits), done.set()))
        caller.start()
        assert done.wait(10), "in_blocks waited for a worker that could not start"
        assert hits.tolist() == [1] * 50
    finally:
        release.set()
        busy.result()


def test_a_failing_block_raises_in_the_caller(threads_of, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)

    def work(first, end):
        if first <= 5 < end:
            raise RuntimeError("block of item 5")
    with pytest.raises(RuntimeError, match="item 5"):
        in_blocks(work, 8)


def test_a_kernel_inside_a_parallel_region_runs_on_python_threads(monkeypatch):
    runtime = compiled.openmp()
    if runtime is None:
        pytest.skip("torch does not run on GNU OpenMP here")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    pools = []
    monkeypatch.setattr(compiled, "_pool", lambda workers, pool=compiled._pool: pools.append(workers) or pool(workers))
    inner = np.zeros(6, np.int64)

    def outer(first, end):
        if first == 0:
            in_blocks(_count, 6, inner)
    in_blocks(outer, 2)
    assert inner.tolist() == [1] * 6
    assert pools == [1]  # the inner call, not the outer one


@kernel
def _scaled_sum(values, factor, out):
    """out[0] = Σ values·factor through borrowed arrays, on a work array of the kernel's own."""
    owned = np.zeros(values.size)
    work, (values, factor, out) = borrowed(owned), borrowed((values, factor, out))
    for i in range(values.size):
        work[i] = values[i] * factor
    total = 0.0
    for i in range(work.size):
        total += work[i]
    out[0] = total
    keep_alive(owned)
    return work.size


def test_borrowed_arrays_read_and_write_the_originals():
    values, out = np.arange(5.0), np.zeros(1)
    assert _scaled_sum(values, 3.0, out) == 5
    assert out[0] == 30.0
    assert values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("threads", [1, 2])
def test_zeros_writes_every_row(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    for shape in [(700, 300), (1, 5), (0, 4), (9,)]:
        np.full(shape, 7.0)  # freed memory that the new array may reuse
        out = compiled.zeros(shape)
        assert out.shape == shape and out.dtype == np.float64 and not out.any()
