import numpy as np
import pytest

from ai4land_coupler.comm import MPIComm, SerialComm, as_communicator


def exercise(comm):
    """The same calls on any communicator; returns what a serial rank 0 should see."""
    local = np.arange(3, dtype=np.float64) + 10 * comm.rank
    return {
        "allgather": comm.allgather(comm.rank),
        "allgatherv": comm.allgatherv(local).tolist(),
        "bcast": comm.bcast({"x": comm.rank}, root=0),
        "max": comm.allreduce_max(float(comm.rank)),
        "node_size": comm.split_shared().size,
    }


def test_serial_comm():
    assert exercise(SerialComm()) == {"allgather": [0], "allgatherv": [0.0, 1.0, 2.0], "bcast": {"x": 0},
                                      "max": 0.0, "node_size": 1}


def test_mpi_comm_of_one_rank_agrees_with_serial():
    from mpi4py import MPI

    assert exercise(MPIComm(MPI.COMM_SELF)) == exercise(SerialComm())


def test_as_communicator():
    assert isinstance(as_communicator(None), SerialComm)
    with pytest.raises(TypeError, match="expected an mpi4py communicator"):
        as_communicator(42)
