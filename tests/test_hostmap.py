"""Fine grid → host cells: lat-lon coarsening and refinement, and ESMF/SCRIP weights for any host grid."""
import netCDF4
import numpy as np
import pytest

from ai4land_coupler.errors import ArgumentError, InputFileError, PartitionError
from ai4land_coupler.grids import LatLonGrid, area_weighted_block_mean
from ai4land_coupler.hostmap import LatLonHostMap, WeightsHostMap, write_weights_file
from ai4land_coupler.partition import Box, Points
from conftest import run_lifecycle, unstructured_mesh, write_namelist

FINE = LatLonGrid(12, 24)  # 15-degree cells


def test_lat_lon_hosts_coarser_and_finer():
    x = np.random.default_rng(0).random((2, 12, 24))
    coarse = LatLonHostMap(FINE, 4, 8)
    assert coarse.coarsen == 3 and coarse.shape == (4, 8) and coarse.ncells == 32
    np.testing.assert_allclose(coarse.to_host(x), area_weighted_block_mean(x, FINE, 3).reshape(2, -1), rtol=1e-14)
    np.testing.assert_allclose(coarse.to_host(coarse.to_fine(np.arange(32.0))[None])[0], np.arange(32.0), rtol=1e-14)
    fine = LatLonHostMap(FINE, 24, 48)
    assert fine.refine == 2 and "finer by 2" in fine.description
    host = fine.to_host(x)
    assert host.shape == (2, 24 * 48) and np.array_equal(host[0].reshape(24, 48)[::2, ::2], x[0])
    np.testing.assert_allclose(fine.to_fine(host[0]), x[0], rtol=1e-14)
    with pytest.raises(ArgumentError, match="not an integer coarsening or refinement"):
        LatLonHostMap(FINE, 5, 8)


def test_a_weights_file_of_a_coarsening_gives_the_lat_lon_answer(tmp_path):
    blocks = (np.arange(12)[:, None] // 3) * 8 + np.arange(24)[None, :] // 3
    path = write_weights_file(tmp_path / "w.nc", FINE, blocks, 32)
    weights, latlon = WeightsHostMap(FINE, path), LatLonHostMap(FINE, 4, 8)
    x = np.random.default_rng(1).random((3, 12, 24))
    np.testing.assert_allclose(weights.to_host(x), latlon.to_host(x), rtol=1e-13)
    h = np.random.default_rng(2).random(32)
    np.testing.assert_allclose(weights.to_fine(h), latlon.to_fine(h), rtol=1e-13)


@pytest.mark.parametrize("edit, message", [
    (lambda ds: ds.renameVariable("S", "weights"), "variable 'S' is missing"),
    (lambda ds: ds["col"].__setitem__(0, 10_000), "variable 'col' has 1 indices outside 1..288"),
    (lambda ds: ds["S"].__setitem__(0, -1.0), "negative or non-finite"),
    (lambda ds: ds["S"].__setitem__(slice(None), 2.0), "sums to"),
])
def test_broken_weights_files_are_refused_naming_file_and_variable(tmp_path, edit, message):
    path = write_weights_file(tmp_path / "w.nc", FINE, np.zeros((12, 24), int), 1)
    with netCDF4.Dataset(path, "a") as ds:
        edit(ds)
    with pytest.raises(InputFileError, match=message) as err:
        WeightsHostMap(FINE, path)
    assert str(path) in str(err.value)
    with pytest.raises(InputFileError, match="n_a"):
        WeightsHostMap(LatLonGrid(6, 12), write_weights_file(tmp_path / "v.nc", FINE, np.zeros((12, 24), int), 1))


def test_an_unstructured_host_through_a_weights_file_conserves_the_global_areas(world_dir, tmp_path):
    from ai4land_coupler.datasets import WorldData

    with WorldData.open(world_dir) as world:
        fine = world.fine_grid
    owner, ncells = unstructured_mesh(fine, 3000)
    weights = write_weights_file(tmp_path / "mesh.nc", fine, owner, ncells)
    nml = write_namelist(tmp_path / "u.nml", world_dir, host_weights_file=f"'{weights}'")
    cells = np.random.default_rng(5).permutation(ncells)
    steps = [(2031, 1, 1, 0)]
    out = run_lifecycle(None, nml, Points(cells), steps, 1, ncells)
    frac = out[(steps[0], "landuse_fraction")]
    np.testing.assert_allclose(frac.sum(axis=0), 1.0, atol=1e-12)
    # the global area of each class is the same on the mesh as on a lat-lon host grid
    latlon = run_lifecycle(None, write_namelist(tmp_path / "l.nml", world_dir), Box(0, 0, 180, 90), steps)
    area_b = np.bincount(owner.ravel(), weights=fine.cell_area_weights().ravel(), minlength=ncells)
    area_ll = LatLonGrid(90, 180).cell_area_weights().ravel()
    np.testing.assert_allclose(frac @ area_b, latlon[(steps[0], "landuse_fraction")] @ area_ll, rtol=1e-9)
    np.testing.assert_allclose(out[(steps[0], "lai")] @ area_b, latlon[(steps[0], "lai")] @ area_ll, rtol=1e-9)
    with pytest.raises(PartitionError, match="box partition needs a lat-lon host grid"):
        run_lifecycle(None, nml, Box(0, 0, 10, 10), steps, 1, ncells)


def test_one_hot_weights_give_the_same_means_as_their_float_one_hot():
    """HostExchange.means with OneHot weights (the LAI per class) sums one term per fine cell
    instead of one per level: the same bits as the float one-hot weights."""
    from ai4land_coupler.comm import SerialComm
    from ai4land_coupler.inference import make_layout
    from ai4land_coupler.partition import CellDirectory
    from ai4land_coupler.redistribution import HostExchange, OneHot

    fine = LatLonGrid(48, 96)
    layout = make_layout(48, 96, tile=16, overlap=0.5, wrap_lon=True, band_rows=8, n_slabs=1)
    exchange = HostExchange(SerialComm(), LatLonHostMap(fine, 12, 24), layout, 0, [0],
                            CellDirectory(SerialComm(), np.arange(12 * 24), 12 * 24))
    rng = np.random.default_rng(3)
    levels = rng.integers(-1, 8, size=(48, 96))  # -1: in no class
    one_hot = (levels[None] == np.arange(8)[:, None, None]).astype(np.float32)
    values = rng.random((1, 48, 96)).astype(np.float32)
    per_class = rng.random((8, 48, 96))
    floats = exchange.means([(values, one_hot), (per_class, one_hot)])
    onehot = exchange.means([(values, OneHot(levels, 8)), (per_class, OneHot(levels, 8))])
    for a, b in zip(floats, onehot):
        assert a.shape == b.shape == (8, 12 * 24) and np.array_equal(a, b)
    assert (floats[0] > 0).mean() > 0.8  # a class is in most host cells (16 fine cells each)
