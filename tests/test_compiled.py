"""compiled.in_blocks: every item once, on the caller and the pool, without waiting for a busy pool."""
import threading

import numpy as np
import pytest
import torch

from ai4land_coupler import compiled
from ai4land_coupler.compiled import in_blocks, kernel


@kernel
def _count(hits, first, end):
    for i in range(first, end):
        hits[i] += 1


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("items", [1, 2, 7, 100])
def test_every_item_is_worked_once(threads, items, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    hits = np.zeros(items, np.int64)
    in_blocks(_count, items, hits)
    assert hits.tolist() == [1] * items


def test_the_caller_does_the_work_when_the_pool_is_busy(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
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


def test_a_failing_block_raises_in_the_caller(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)

    def work(first, end):
        if first <= 5 < end:
            raise RuntimeError("block of item 5")
    with pytest.raises(RuntimeError, match="item 5"):
        in_blocks(work, 8)
