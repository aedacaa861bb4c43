"""The MPI communicator agrees with the serial one, and partitions are validated across ranks."""
import numpy as np
import pytest

from ai4land_coupler.comm import MPIComm
from ai4land_coupler.errors import PartitionError
from ai4land_coupler.partition import CellDirectory


def all_ranks_agree(comm, ok: bool) -> bool:
    return all(comm.allgather(bool(ok)))


@pytest.mark.mpi(min_size=2)
def test_mpi_comm_collectives():
    from mpi4py import MPI

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    n, r = comm.size, comm.rank
    local = np.arange(r + 1, dtype=np.int64) + 100 * r
    ok = (comm.allgather(r) == list(range(n))
          and comm.allgatherv(local).tolist() == [100 * q + k for q in range(n) for k in range(q + 1)]
          and comm.bcast(r * 7, root=n - 1) == (n - 1) * 7
          and comm.allreduce_max(float(r)) == n - 1)
    assert all_ranks_agree(comm, ok)


@pytest.mark.mpi(min_size=2)
def test_overlap_and_gap_reported_identically_on_every_rank():
    from mpi4py import MPI

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    n, r = comm.size, comm.rank
    cells = np.arange(r * 10, r * 10 + 11)  # each rank takes one cell of the next: overlaps, last cell beyond
    try:
        CellDirectory(comm, cells[cells < 10 * n + 5], 10 * n + 5)
        msg = ""
    except PartitionError as exc:
        msg = str(exc)
    messages = comm.allgather(msg)
    expect_dup = f"{n - 1} cells owned more than once"
    assert all_ranks_agree(comm, len(set(messages)) == 1 and expect_dup in msg and "owned by no rank" in msg)
