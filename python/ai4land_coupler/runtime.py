"""Per-rank runtime: rank-prefixed logging, torch device and thread count, heap policy."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass

from .comm import Communicator

LOGGER_NAME = "ai4land"


def setup_logging(rank: int, level: str = "info") -> logging.Logger:
    """The package logger, each line prefixed with ``[ai4land r<rank>]``."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level.upper())
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"[ai4land r{rank}] %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


@dataclass(frozen=True)
class RankRuntime:
    device: str  # 'cpu' or 'cuda:N'
    threads: int
    local_rank: int
    local_size: int
    is_inference_rank: bool
    inference_index: int  # position among inference ranks, -1 if not one
    inference_ranks: tuple[int, ...]  # the inference ranks, in order

    @property
    def n_inference(self) -> int:
        return len(self.inference_ranks)


#: glibc ``mallopt`` parameters (malloc.h) and the values :func:`keep_freed_memory` gives them.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 2**31 - 1


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MB in the process heap (glibc ``mallopt``); False where the C
    library is not glibc, or refuses.

    By default glibc gives every large block its own ``mmap`` and returns it to the system when
    it is freed, so each tensor of a forward pass lands on fresh pages that the kernel must fault
    in and zero: a quarter of the land-use U-Net's time on the CPU. With these settings the
    blocks are reused from the heap. The heap keeps its peak size (the resident size does not
    grow beyond the peak it had anyway). Process-wide: the host's own allocations follow it too.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None and hasattr(libc, "gnu_get_libc_version") else None
    except OSError:
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def plan_runtime(comm: Communicator, device: str = "auto", threads: int = 0, inference_ranks: int = 0) -> RankRuntime:
    """Choose this rank's device, torch threads and inference role; collective over ``comm``.

    GPUs: one inference rank per GPU on each node (local rank modulo device count).
    CPU: every rank (or the first ``inference_ranks``) infers; threads = cores on node // ranks on node.
    """
    import torch

    node = comm.split_shared()
    local_rank, local_size = node.rank, node.size
    ngpu = torch.cuda.device_count() if device in ("auto", "cuda") else 0
    if device == "cuda" and ngpu == 0:
        from .errors import EmulatorError

        raise EmulatorError("device = 'cuda' was requested but torch sees no CUDA device")
    if ngpu:
        dev = f"cuda:{local_rank % ngpu}"
        candidate = local_rank < ngpu
    else:
        dev = "cpu"
        candidate = True
    flags = comm.allgather(candidate)
    order = [r for r, f in enumerate(flags) if f]
    if inference_ranks:
        order = order[:inference_ranks]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    nthreads = threads or max(1, cores // local_size)
    torch.set_num_threads(nthreads)
    idx = order.index(comm.rank) if comm.rank in order else -1
    return RankRuntime(dev, nthreads, local_rank, local_size, idx >= 0, idx, tuple(order))
