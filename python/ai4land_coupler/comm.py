"""One communicator interface: real MPI (mpi4py), a serial stand-in, or threads standing in for ranks.

The plugin only ever talks to the host's communicator through :class:`Communicator`, so the serial
unit tests, the thread-rank tests and the MPI tests run the same code paths. ``tests/test_comm.py``
and ``tests/mpi/test_comm_mpi.py`` check they agree.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, TypeVar

import numpy as np

T = TypeVar("T")


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
    def alltoallv(self, send: list[np.ndarray], dtype) -> list[np.ndarray]:
        """Personalised exchange: ``send[r]`` goes to rank ``r`` as a flat array of ``dtype`` (the same
        on every rank); returns what each rank sent here, in rank order."""

    @abstractmethod
    def gather(self, obj: Any, root: int = 0) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on ``root``; None elsewhere."""

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

    def alltoallv(self, send, dtype):
        if len(send) != 1:
            raise ValueError(f"alltoallv on one rank needs one send array, got {len(send)}")
        return [np.array(send[0], dtype=dtype, copy=True).ravel()]

    def gather(self, obj, root=0):
        return [obj]

    def allreduce_max(self, value):
        return value

    def split_shared(self):
        return self


class ThreadComm(Communicator):
    """Ranks as threads of one process, for tests of the parallel paths without MPI: the same
    collectives, each a rendezvous at a barrier. A failing rank should call :meth:`abort` so that the
    others raise ``threading.BrokenBarrierError`` instead of waiting forever."""

    def __init__(self, shared, rank: int):
        self._shared, self.rank, self.size = shared, rank, len(shared["slots"])

    @classmethod
    def group(cls, size: int) -> list["ThreadComm"]:
        import threading

        shared = {"slots": [None] * size, "barrier": threading.Barrier(size, timeout=120)}
        return [cls(shared, r) for r in range(size)]

    def abort(self) -> None:
        self._shared["barrier"].abort()

    def _everyone(self, obj):
        slots, barrier = self._shared["slots"], self._shared["barrier"]
        slots[self.rank] = obj
        barrier.wait()
        out = list(slots)
        barrier.wait()
        return out

    def allgather(self, obj):
        return self._everyone(obj)

    def allgatherv(self, local):
        return np.concatenate(self._everyone(np.array(local, copy=True).ravel()))

    def bcast(self, obj, root=0):
        return self._everyone(obj)[root]

    def alltoallv(self, send, dtype):
        if len(send) != self.size:
            raise ValueError(f"alltoallv needs {self.size} send arrays, got {len(send)}")
        table = self._everyone([np.array(a, dtype=dtype, copy=True).ravel() for a in send])
        return [row[self.rank] for row in table]

    def gather(self, obj, root=0):
        everyone = self._everyone(obj)
        return everyone if self.rank == root else None

    def allreduce_max(self, value):
        return max(self._everyone(value))

    def split_shared(self):
        return self


def run_threads(size: int, work) -> list:
    """``work(comm)`` on ``size`` thread ranks; the results in rank order. The first failure is
    raised after every thread has stopped."""
    import threading

    comms = ThreadComm.group(size)
    results: list = [None] * size
    failures: list = [None] * size

    def run(comm):
        try:
            results[comm.rank] = work(comm)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures[comm.rank] = exc
            comm.abort()

    threads = [threading.Thread(target=run, args=(c,)) for c in comms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = next((f for f in failures if f is not None and not isinstance(f, threading.BrokenBarrierError)),
                 next((f for f in failures if f is not None), None))
    if first is not None:
        raise first
    return results


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


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
        self.comm.Allgatherv(local, [out, counts, _offsets(counts), MPI._typedict[local.dtype.char]])
        return out

    def bcast(self, obj, root=0):
        return self.comm.bcast(obj, root=root)

    def alltoallv(self, send, dtype):
        from mpi4py import MPI

        if len(send) != self.size:
            raise ValueError(f"alltoallv needs {self.size} send arrays, got {len(send)}")
        dtype = np.dtype(dtype)
        out = np.concatenate([np.asarray(a, dtype=dtype).ravel() for a in send])
        counts = np.array([a.size for a in send], dtype=np.int64)
        recv_counts = np.empty(self.size, dtype=np.int64)
        self.comm.Alltoall(counts, recv_counts)
        received = np.empty(int(recv_counts.sum()), dtype=dtype)
        mpi_type = MPI._typedict[dtype.char]
        self.comm.Alltoallv([out, counts, _offsets(counts), mpi_type],
                            [received, recv_counts, _offsets(recv_counts), mpi_type])
        return np.split(received, np.cumsum(recv_counts)[:-1])

    def gather(self, obj, root=0):
        return self.comm.gather(obj, root=root)

    def allreduce_max(self, value):
        from mpi4py import MPI

        return self.comm.allreduce(value, op=MPI.MAX)

    def split_shared(self):
        from mpi4py import MPI

        return MPIComm(self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank))


def collective(comm: Communicator, work: Callable[[], T]) -> T:
    """``work()`` on every rank, then agreement: if it raised on any rank, every rank raises an error
    with the status of the first rank that failed and a message naming it (on one rank: the error
    itself), so that no rank goes on into a collective that the failed rank will never join."""
    from .errors import Ai4LandError, error_with_status

    try:
        result, failure = work(), None
    except Exception as exc:  # noqa: BLE001 - reported to every rank below
        result, failure = None, exc
    report = None
    if failure is not None:
        status = failure.status if isinstance(failure, Ai4LandError) else Ai4LandError.status
        text = str(failure) if isinstance(failure, Ai4LandError) else f"{type(failure).__name__}: {failure}"
        report = (status, text)
    failed = [(rank, r) for rank, r in enumerate(comm.allgather(report)) if r is not None]
    if not failed:
        return result
    rank, (status, text) = failed[0]
    if comm.size == 1:
        raise failure
    others = f" (and {len(failed) - 1} other rank{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
    raise error_with_status(status, f"rank {rank}{others}: {text}") from failure


def as_communicator(comm) -> Communicator:
    """Accept a :class:`Communicator`, an ``mpi4py`` communicator, or ``None`` (serial)."""
    if comm is None:
        return SerialComm()
    if isinstance(comm, Communicator):
        return comm
    if hasattr(comm, "Get_rank") and hasattr(comm, "Allgatherv"):
        return MPIComm(comm)
    raise TypeError(f"expected an mpi4py communicator or a Communicator, got {type(comm).__name__}")
