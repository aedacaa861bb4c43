import numpy as np
import pytest

from ai4land_coupler.grids import LatLonGrid, area_weighted_block_mean, block_sum, upsample_blocks


def test_global_grid_geometry():
    g = LatLonGrid.global_grid(2.0)
    assert g.shape == (90, 180) and g.is_global
    assert g.lat[0] == -89.0 and g.lon[-1] == 179.0
    assert g.cell_area_weights().sum() == pytest.approx(4 * np.pi)
    assert LatLonGrid.from_centres(g.lat, g.lon) == g


def test_refinement_factor_and_errors():
    assert LatLonGrid(45, 90).refinement_factor(LatLonGrid(180, 360)) == 4
    with pytest.raises(ValueError, match="not an integer refinement"):
        LatLonGrid(40, 90).refinement_factor(LatLonGrid(180, 360))


def test_block_maps_conserve_area_integrals():
    fine = LatLonGrid(40, 80)
    rng = np.random.default_rng(0)
    field = rng.random((3, 40, 80))
    coarse = area_weighted_block_mean(field, fine, 4)
    w_f, w_c = fine.cell_area_weights(), LatLonGrid(10, 20).cell_area_weights()
    np.testing.assert_allclose((coarse * w_c).sum(axis=(1, 2)), (field * w_f).sum(axis=(1, 2)), rtol=1e-12)
    assert np.array_equal(block_sum(upsample_blocks(coarse, 4), 4), 16 * coarse)
