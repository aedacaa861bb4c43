"""Per-rank runtime: rank-prefixed logging, torch device and thread count."""
from __future__ import annotations

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
