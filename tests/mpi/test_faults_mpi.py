"""Faults injected on one rank: every rank gets the same status from the same call, and no rank hangs.

Run under ``mpirun`` with a timeout (scripts/test.sh): a hang fails the run instead of blocking it.
"""
from pathlib import Path

import numpy as np
import pytest

from ai4land_coupler.comm import MPIComm
from ai4land_coupler.component import Component
from ai4land_coupler.errors import CODE, Ai4LandError
from ai4land_coupler.mockhost import decompose
from conftest import write_namelist

NLAT, NLON = 90, 180


@pytest.fixture
def comm():
    from mpi4py import MPI

    return MPIComm(MPI.COMM_WORLD.Dup())


def folder(comm, tmp_path_factory, name) -> Path:
    return Path(comm.bcast(str(tmp_path_factory.mktemp(name)) if comm.rank == 0 else None))


def outcome(call):
    """(status, message) of a call: (0, '') when it succeeds."""
    try:
        call()
    except Ai4LandError as exc:
        return exc.status, str(exc)
    return 0, ""


def started(comm, nml) -> Component:
    c = Component()
    c.init(comm, nml)
    c.def_partition(decompose(NLAT, NLON, comm.size, comm.rank))
    c.enddef()
    return c


def agreed(comm, result, status, text):
    """The same result on every rank, with the expected status and text."""
    results = comm.allgather(result)
    return all(r == results[0] for r in results) and results[0][0] == status and text in results[0][1], results


@pytest.mark.mpi(min_size=3)
@pytest.mark.timeout(300)
def test_nan_put_on_rank_2_fails_the_next_step_on_every_rank(comm, tmp_path_factory, world_dir):
    nml = write_namelist(folder(comm, tmp_path_factory, "nan") / f"r{comm.rank}.nml", world_dir)
    c = started(comm, nml)
    tas = np.full(c.local_size, 280.0)
    if comm.rank == 2:
        tas[0] = np.nan
    put = outcome(lambda: c.put("tas", tas))
    step = outcome(lambda: c.step((2031, 1, 1, 0)))
    ok, results = agreed(comm, step, CODE["AI4LAND_ERR_ARGUMENT"], "rank 2: put() failed: put('tas'): 1 values are NaN")
    assert all(comm.allgather(ok and (put[0] != 0) == (comm.rank == 2))), results


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(300)
def test_missing_file_on_rank_1_fails_init_on_every_rank(comm, tmp_path_factory, world_dir):
    where = folder(comm, tmp_path_factory, "missing")
    extra = {"static_file": f"'{where / 'no_such_static.nc'}'"} if comm.rank == 1 else {}
    nml = write_namelist(where / f"r{comm.rank}.nml", world_dir, **extra)
    result = outcome(lambda: Component().init(comm, nml))
    ok, results = agreed(comm, result, CODE["AI4LAND_ERR_NAMELIST"], "rank 1: ")
    assert all(comm.allgather(ok and "no_such_static.nc" in result[1])), results


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(300)
def test_exception_inside_the_emulator_on_one_rank_fails_the_step_on_every_rank(comm, tmp_path_factory, world_dir):
    nml = write_namelist(folder(comm, tmp_path_factory, "emu") / f"r{comm.rank}.nml", world_dir)
    c = started(comm, nml)
    has_tiles = c.slab >= 0 and any(band.tiles for band in c.layout.slab_bands(c.slab))
    bad = max(rank for rank, tiles in enumerate(comm.allgather(has_tiles)) if tiles)  # a rank that runs the network
    if comm.rank == bad:
        def broken(*_):
            raise RuntimeError("injected fault in the network")
        c.landuse_emulator.model.forward = broken
    result = outcome(lambda: c.step((2031, 1, 1, 0)))
    ok, results = agreed(comm, result, CODE["AI4LAND_ERR_EMULATOR"], f"rank {bad}: ")
    assert all(comm.allgather(ok and "injected fault in the network" in result[1])), results


@pytest.mark.mpi(min_size=2)
@pytest.mark.timeout(300)
def test_a_bad_partition_on_one_rank_fails_enddef_on_every_rank(comm, tmp_path_factory, world_dir):
    from ai4land_coupler.partition import Box

    nml = write_namelist(folder(comm, tmp_path_factory, "part") / f"r{comm.rank}.nml", world_dir)
    c = Component()
    c.init(comm, nml)
    box = Box(0, 0, NLON + 5, 1) if comm.rank == 0 else decompose(NLAT, NLON, comm.size, comm.rank)
    outcome(lambda: c.def_partition(box))
    result = outcome(c.enddef)
    ok, results = agreed(comm, result, CODE["AI4LAND_ERR_PARTITION"], "rank 0: def_partition() failed")
    assert all(comm.allgather(ok)), results
