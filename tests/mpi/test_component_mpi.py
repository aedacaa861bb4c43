"""The component under MPI gives the same bits as a serial run, for boxes and shuffled points."""
import hashlib
from pathlib import Path

import numpy as np
import pytest

from ai4land_coupler.comm import MPIComm, SerialComm
from ai4land_coupler.mockhost import decompose
from ai4land_coupler.partition import Box, Points
from conftest import run_lifecycle, unstructured_mesh, write_namelist

NLAT, NLON = 90, 180
STEPS = [(2031, 1, 1, 0), (2031, 2, 1, 0)]


def global_hashes(comm, namelist, partition):
    """sha256 of every field produced, in global cell order, gathered from all ranks."""
    fields = run_lifecycle(comm, namelist, partition, STEPS, NLAT, NLON)
    return {key: hashlib.sha256(values.tobytes()).hexdigest() for key, values in fields.items()}


@pytest.fixture(scope="module")
def setup(world_dir, tmp_path_factory):
    from mpi4py import MPI

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    folder = comm.bcast(str(tmp_path_factory.mktemp("mpi")) if comm.rank == 0 else None)
    nml = write_namelist(Path(folder) / f"r{comm.rank}.nml", world_dir)
    return comm, nml, serial_reference(comm, nml)


def serial_reference(comm, nml):
    """The serial whole-grid hashes, computed on rank 0 and given to every rank (or the error's text)."""
    reference = None
    if comm.rank == 0:
        try:
            reference = global_hashes(SerialComm(), nml, Box(0, 0, NLON, NLAT))
        except Exception as exc:  # never leave the other ranks waiting in bcast
            reference = repr(exc)
    return comm.bcast(reference)


def verdict(comm, ok):
    return all(comm.allgather(bool(ok)))


@pytest.mark.mpi(min_size=2)
def test_uneven_boxes_match_serial_bits(setup):
    comm, nml, reference = setup
    box = decompose(NLAT, NLON, comm.size, comm.rank)
    hashes = global_hashes(comm, nml, box)
    assert verdict(comm, isinstance(reference, dict) and hashes == reference), reference


@pytest.mark.mpi(min_size=2)
def test_shuffled_points_match_serial_bits(setup):
    comm, nml, reference = setup
    order = np.random.default_rng(7).permutation(NLAT * NLON)
    mine = Points(np.array_split(order, comm.size)[comm.rank])
    hashes = global_hashes(comm, nml, mine)
    assert verdict(comm, isinstance(reference, dict) and hashes == reference), reference


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("inference_ranks", [1, 2])
def test_fewer_inference_ranks_match_all(setup, tmp_path_factory, world_dir, inference_ranks):
    comm, _, reference = setup
    folder = comm.bcast(str(tmp_path_factory.mktemp("few")) if comm.rank == 0 else None)
    nml = write_namelist(Path(folder) / f"r{comm.rank}.nml", world_dir, inference_ranks=inference_ranks)
    hashes = global_hashes(comm, nml, decompose(NLAT, NLON, comm.size, comm.rank))
    assert verdict(comm, isinstance(reference, dict) and hashes == reference), reference


@pytest.mark.mpi(min_size=2)
def test_unstructured_host_through_a_weights_file_matches_serial_bits(tmp_path_factory, world_dir):
    """An ICON-like host: a Voronoi mesh given by an ESMF weights file, cells shuffled over the ranks."""
    from mpi4py import MPI

    from ai4land_coupler.datasets import WorldData
    from ai4land_coupler.hostmap import write_weights_file

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    with WorldData.open(world_dir) as world:
        owner, ncells = unstructured_mesh(world.fine_grid, 2000, seed=3)
        folder = Path(comm.bcast(str(tmp_path_factory.mktemp("mesh")) if comm.rank == 0 else None))
        if comm.rank == 0:
            write_weights_file(folder / "mesh.nc", world.fine_grid, owner, ncells)
    comm.bcast(None)  # the file is written before anyone reads it
    nml = write_namelist(folder / f"r{comm.rank}.nml", world_dir, host_weights_file=f"'{folder / 'mesh.nc'}'")

    def hashes(c, partition):
        fields = run_lifecycle(c, nml, partition, STEPS, 1, ncells)
        return {key: hashlib.sha256(v.tobytes()).hexdigest() for key, v in fields.items()}

    reference = None
    if comm.rank == 0:
        try:
            reference = hashes(SerialComm(), Points(np.arange(ncells)))
        except Exception as exc:  # never leave the other ranks waiting in bcast
            reference = repr(exc)
    reference = comm.bcast(reference)
    order = np.random.default_rng(11).permutation(ncells)
    mine = hashes(comm, Points(np.array_split(order, comm.size)[comm.rank]))
    assert verdict(comm, isinstance(reference, dict) and mine == reference), reference


@pytest.mark.mpi(min_size=2)
def test_thin_bands_on_every_rank_match_serial_bits(tmp_path_factory, world_dir):
    """Bands of 8 rows: many halo and tile-sum messages between slabs, the same bits as one rank."""
    from mpi4py import MPI

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    folder = Path(comm.bcast(str(tmp_path_factory.mktemp("thin")) if comm.rank == 0 else None))
    nml = write_namelist(folder / f"r{comm.rank}.nml", world_dir, band_rows=8)
    reference = serial_reference(comm, nml)
    hashes = global_hashes(comm, nml, decompose(NLAT, NLON, comm.size, comm.rank))
    assert verdict(comm, isinstance(reference, dict) and hashes == reference), reference


@pytest.mark.mpi(min_size=2)
def test_each_inference_rank_holds_only_its_slab_of_the_fine_grid(tmp_path_factory, world_dir):
    from mpi4py import MPI

    from ai4land_coupler.component import Component

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    folder = Path(comm.bcast(str(tmp_path_factory.mktemp("slab")) if comm.rank == 0 else None))
    nml = write_namelist(folder / f"r{comm.rank}.nml", world_dir, band_rows=16, inference_ranks=comm.size - 1)
    c = Component()
    c.init(comm, nml)
    c.def_partition(decompose(NLAT, NLON, comm.size, comm.rank))
    c.enddef()
    c.step((2031, 1, 1, 0))
    held = c.fine_map.shape if c.fine_map is not None else None
    rows = comm.allgather((c.rows, held, None if c.world is None else c.world.land_mask.shape))
    c.finalize()
    slabs = [r for r in rows if r[1] is not None]
    nlat, nlon = c.fine_grid.shape
    ok = (len(slabs) == comm.size - 1 and rows[-1] == ((0, 0), None, None)
          and [s[0][0] for s in slabs] == [0] + [s[0][1] for s in slabs[:-1]] and slabs[-1][0][1] == nlat
          and all(s[1] == s[2] == (s[0][1] - s[0][0], nlon) for s in slabs))
    assert verdict(comm, ok), rows


@pytest.mark.mpi(min_size=2)
def test_erp_restart_written_on_n_ranks_continues_on_one_and_back(tmp_path_factory, world_dir):
    """CESM's ERP: a restart written on N ranks read on 1, and one written on 1 read on N, give the
    bits of the continuous serial run."""
    from mpi4py import MPI

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    folder = Path(comm.bcast(str(tmp_path_factory.mktemp("erp")) if comm.rank == 0 else None))
    nml = write_namelist(folder / f"r{comm.rank}.nml", world_dir)
    first, second = STEPS, [(2032, 1, 1, 0), (2032, 3, 1, 0)]

    def hashes(c, partition, steps, **restart):
        fields = run_lifecycle(c, nml, partition, steps, NLAT, NLON, **restart)
        return {key: hashlib.sha256(v.tobytes()).hexdigest() for key, v in fields.items()}

    whole = Box(0, 0, NLON, NLAT)
    reference = serial_on_rank0 = None
    hashes(comm, decompose(NLAT, NLON, comm.size, comm.rank), first, write_restart=folder / "from_n.nc")
    if comm.rank == 0:
        try:
            reference = hashes(SerialComm(), whole, first + second)
            hashes(SerialComm(), whole, first, write_restart=folder / "from_1.nc")
            serial_on_rank0 = hashes(SerialComm(), whole, second, read_restart=folder / "from_n.nc")
        except Exception as exc:  # never leave the other ranks waiting in bcast
            reference = repr(exc)
    reference, serial_on_rank0 = comm.bcast((reference, serial_on_rank0))
    order = np.random.default_rng(5).permutation(NLAT * NLON)
    on_n = hashes(comm, Points(np.array_split(order, comm.size)[comm.rank]), second, read_restart=folder / "from_1.nc")
    want = {k: v for k, v in reference.items() if k[0] in second} if isinstance(reference, dict) else reference
    assert verdict(comm, on_n == want and serial_on_rank0 == want and len(on_n) == 6), (reference, on_n)


@pytest.mark.mpi(min_size=2)
def test_per_slab_histories_joined_are_the_one_history_of_a_serial_run(tmp_path_factory, world_dir):
    """history_files = 'per_slab': each inference rank writes its rows, no gather; `join_history`
    makes of them the file a serial run writes, bit for bit."""
    from mpi4py import MPI

    from ai4land_coupler.history import history_path, join_history

    comm = MPIComm(MPI.COMM_WORLD.Dup())
    folder = Path(comm.bcast(str(tmp_path_factory.mktemp("slabs")) if comm.rank == 0 else None))
    nml = write_namelist(folder / f"r{comm.rank}.nml", world_dir, output_dir=f"'{folder / 'slabs'}'",
                         history_files="'per_slab'")
    run_lifecycle(comm, nml, decompose(NLAT, NLON, comm.size, comm.rank), STEPS, NLAT, NLON)
    verdicts = None
    if comm.rank == 0:
        try:
            serial = write_namelist(folder / "serial.nml", world_dir, output_dir=f"'{folder / 'one'}'")
            run_lifecycle(SerialComm(), serial, Box(0, 0, NLON, NLAT), STEPS, NLAT, NLON)
            files = sorted(p.name for p in (folder / "slabs").iterdir())
            joined = join_history(folder / "slabs")
            slab_names = {history_path("", s).name for s in range(comm.size)}  # a slab without rows has no file
            verdicts = (len(files) > 1 and set(files) <= slab_names,
                        _history_bytes(joined) == _history_bytes(history_path(folder / "one")))
        except Exception as exc:  # never leave the other ranks waiting in bcast
            verdicts = repr(exc)
    verdicts = comm.bcast(verdicts)
    assert verdict(comm, verdicts == (True, True)), verdicts


def _history_bytes(path):
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        return {name: v[:].tobytes() for name, v in ds.variables.items()}
