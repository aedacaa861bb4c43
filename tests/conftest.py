import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ai4land_coupler.datasets import FILE_NAMES

REPO = Path(__file__).resolve().parents[1]

# test_f90wrap.py calls libai4land in this interpreter; its cffi start-up can spin forever when torch
# and the plugin were imported first, as the other tests do. So it runs in a process of its own
# (test_f90wrap_process.py), which sets AI4LAND_F90WRAP_PROCESS=1.
if os.environ.get("AI4LAND_F90WRAP_PROCESS") != "1":
    collect_ignore = ["test_f90wrap.py"]
BUILD = REPO / "build"
WORLD = REPO / "data" / "world"
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMP_NUM_THREADS": "1",
}


def run_mpi(n: int, argv: list[str], cwd, timeout: int = 300, env_extra=None) -> subprocess.CompletedProcess:
    """``mpirun -n N argv`` with a timeout, so a hang fails the test instead of blocking CI."""
    env = {**os.environ, **MPI_ENV, **(env_extra or {})}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run([shutil.which("mpirun") or "mpirun", "-n", str(n), *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def world_dir() -> Path:
    """The default synthetic world (seed 0), made by the setup's `ai4land make-data` if missing."""
    if not all((WORLD / name).exists() for name in FILE_NAMES.values()):
        if int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
            pytest.fail(f"{WORLD} is missing: run `ai4land make-data --out {WORLD}` before the MPI tests")
        from ai4land_coupler.world import make_world

        make_world(WORLD, seed=0)
    return WORLD


SMALL_WORLD = {"fine_res": 3.0, "coarse_res": 12.0, "first_year": 2015, "last_year": 2017}


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory) -> Path:
    """A small world (3 degree emulator grid, 12 degree scenario grid, 2015-2017) for the file tests."""
    from ai4land_coupler.world import make_world

    out = tmp_path_factory.mktemp("world_small")
    make_world(out, seed=0, **SMALL_WORLD)
    return out


@pytest.fixture(scope="session")
def small_world(small_dir):
    from ai4land_coupler.datasets import WorldData

    with WorldData.open(small_dir) as world:
        yield world


def run_lifecycle(comm, namelist, partition, steps, nlat=90, nlon=180, drivers=None, read_restart=None,
                  write_restart=None) -> dict:
    """Drive a Component through init..finalize; returns {(step, field): values in global cell order}.

    Collective: every rank gets the whole field, gathered from all ranks' local cells. With
    ``read_restart`` the run continues from that file; with ``write_restart`` it writes one at the end.
    """
    import numpy as np

    from ai4land_coupler.comm import as_communicator
    from ai4land_coupler.component import Component

    comm = as_communicator(comm)
    c = Component()
    c.init(comm, namelist)
    c.def_partition(partition)
    c.enddef()
    if read_restart:
        c.read_restart(read_restart)
    cells = partition.global_indices(nlat, nlon)
    out = {}
    for when in steps:
        for name, values in (drivers(cells) if drivers else {}).items():
            c.put(name, values)
        for name in sorted(c.step(when)):
            local = np.zeros((len(c.field_levels(name)), c.local_size))
            c.get(name, local)
            full = np.full((local.shape[0], nlat * nlon), np.nan)
            for idx, vals in comm.allgather((cells, local)):
                full[:, idx] = vals
            out[(when, name)] = full
    if write_restart:
        c.write_restart(write_restart)
    c.finalize()
    return out


def unstructured_mesh(grid, ncells: int, seed: int = 0):
    """Each fine cell's host cell: the nearest of ``ncells`` random points on the sphere (a Voronoi mesh)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    seeds = rng.normal(size=(ncells, 3))
    seeds /= np.linalg.norm(seeds, axis=1, keepdims=True)
    lat, lon = np.meshgrid(np.deg2rad(grid.lat), np.deg2rad(grid.lon), indexing="ij")
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)
    owner = np.argmax(xyz @ seeds.T, axis=-1)
    used, owner = np.unique(owner, return_inverse=True)  # every host cell holds fine cells
    return owner.reshape(grid.shape), used.size


def write_namelist(path: Path, world: Path, **overrides) -> Path:
    """A plugin namelist for the default world on a 2-degree host grid, with overrides."""
    values = {"host_nlat": 90, "host_nlon": 180, "input_dir": f"'{world}'", **overrides}
    body = "\n".join(f"  {k} = {v}" for k, v in values.items())
    path.write_text(f"&ai4land_nml\n{body}\n/\n")
    return path
