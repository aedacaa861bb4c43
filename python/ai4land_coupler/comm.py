"""One communicator interface: real MPI (mpi4py) or a serial stand-in.

The plugin only ever talks to the host's communicator through :class:`Communicator`, so the serial
unit tests and the MPI tests run the same code paths. ``tests/test_comm.py`` checks they agree.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Communicator(ABC):
    rank: int
    size: int

    @abstractmethod
    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""

    @abstractmethod
    def allgatherv(self, local: np.ndarray) -> np.ndarray:
        """Concatenation of every rank's 1-D array in rank order, on every rank."""

    @abstractmethod
    def bcast(self, obj: Any, root: int = 0) -> Any:
        """``obj`` from ``root`` on every rank."""

    @abstractmethod
    def allreduce_max(self, value: float) -> float:
        """Maximum of ``value`` over ranks."""

    @abstractmethod
    def split_shared(self) -> "Communicator":
        """The ranks that share this node's memory (MPI_COMM_TYPE_SHARED)."""

    def barrier(self) -> None:
        self.allgather(None)


class SerialComm(Communicator):
    """A communicator of one rank, for serial use and tests."""

    rank = 0
    size = 1

    def allgather(self, obj):
        return [obj]

    def allgatherv(self, local):
        return np.array(local, copy=True)

    def bcast(self, obj, root=0):
        return obj

    def allreduce_max(self, value):
        return value

    def split_shared(self):
        return self


class MPIComm(Communicator):
    """Wraps an ``mpi4py.MPI.Comm`` given by the host; never assumes COMM_WORLD."""

    def __init__(self, comm):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def allgatherv(self, local):
        from mpi4py import MPI

        local = np.ascontiguousarray(local)
        counts = np.array(self.comm.allgather(local.size), dtype=np.int64)
        out = np.empty(int(counts.sum()), dtype=local.dtype)
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.comm.Allgatherv(local, [out, counts, displs, MPI._typedict[local.dtype.char]])
        return out

    def bcast(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def allreduce_max(self, value):
        from mpi4py import MPI

        return self.comm.allreduce(value, op=MPI.MAX)

    def split_shared(self):
        from mpi4py import MPI

        return MPIComm(self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank))


def as_communicator(comm) -> Communicator:
    """Accept a :class:`Communicator`, an ``mpi4py`` communicator, or ``None`` (serial)."""
    if comm is None:
        return SerialComm()
    if isinstance(comm, Communicator):
        return comm
    if hasattr(comm, "Get_rank") and hasattr(comm, "Allgatherv"):
        return MPIComm(comm)
    raise TypeError(f"expected an mpi4py communicator or a Communicator, got {type(comm).__name__}")
