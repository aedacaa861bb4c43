"""The synthetic small_world: determinism, exact aggregation, regions, physical plausibility (readers: test_readers.py)."""
from __future__ import annotations

import netCDF4
import numpy as np
import pytest

from ai4land_coupler.datasets import (FILE_NAMES, FOREST, LUH2_CROSSWALK, LUH2_STATES, NODATA, SCENARIO_GROUPS,
                                      WATER, WorldData, sha256_file)
from ai4land_coupler.grids import LatLonGrid, Region, block_sum, upsample_blocks
from ai4land_coupler.world import make_world
from conftest import SMALL_WORLD

def _all_arrays(directory):
    arrays = {}
    for name in FILE_NAMES.values():
        with netCDF4.Dataset(directory / name) as nc:
            nc.set_auto_mask(False)
            arrays.update({f"{name}:{v}": np.array(nc[v][:]) for v in nc.variables})
    return arrays


def test_same_seed_gives_identical_files_and_arrays(small_dir, tmp_path):
    paths = make_world(tmp_path / "again", seed=0, **SMALL_WORLD)
    assert set(paths) == set(FILE_NAMES)
    for key, path in paths.items():
        assert sha256_file(path) == sha256_file(small_dir / FILE_NAMES[key]), key
    a, b = _all_arrays(small_dir), _all_arrays(tmp_path / "again")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_different_seed_gives_a_different_world(small_dir, tmp_path):
    make_world(tmp_path / "other", seed=1, **SMALL_WORLD)
    with WorldData.open(small_dir) as w0, WorldData.open(tmp_path / "other") as w1:
        assert (w0.land_mask != w1.land_mask).mean() > 0.1
        assert not np.array_equal(w0.lulc(2016), w1.lulc(2016))
        assert not np.allclose(w0.drivers(2016, 7), w1.drivers(2016, 7))


def test_grids_formats_and_land_share(small_world, small_dir):
    assert small_world.fine_grid.shape == (60, 120) and small_world.coarse_grid.shape == (15, 30) and small_world.factor == 4
    assert small_world.fine_grid.lat[0] == -88.5 and small_world.fine_grid.lon[0] == -178.5
    assert small_world.years == [2015, 2016, 2017] and small_world.scenario_years == small_world.years
    area = small_world.fine_grid.cell_area_weights()
    assert 0.27 < (area * small_world.land_mask).sum() / area.sum() < 0.33
    with netCDF4.Dataset(small_dir / "luh2_states.nc") as nc:
        assert nc["time"].units == "years since 2015-01-01 0:0:0" and nc["time"].calendar == "noleap"
        assert list(nc["time"][:]) == [0, 1, 2]
        assert nc["lat"].bounds == "lat_bnds" and nc["lon"].bounds == "lon_bnds"
        for name in LUH2_STATES:
            v = nc[name]
            assert (v.dtype, v.units, v.standard_name) == (np.float32, "1", "area_fraction")
            assert np.isclose(v._FillValue, 1e20)
        assert np.ma.is_masked(nc["primf"][0])  # ocean cells
    with netCDF4.Dataset(small_dir / "lulc_maps.nc") as nc:
        assert nc["lulc"].dtype == np.uint8
        assert list(nc["lulc"].flag_values) == [0, 11, 22, 33, 44, 55, 66, 77, 99]
        assert nc["lulc"].flag_meanings.endswith("water no_data")
    with netCDF4.Dataset(small_dir / "lai_monthly.nc") as nc:
        assert nc["lai"].standard_name == "leaf_area_index" and nc["lai"].units == "m2 m-2"
        assert nc["lai"].filters()["zlib"] and nc["time"].calendar == "noleap"
        assert nc["time"].units == "days since 2015-01-01 0:0:0"
        assert nc["time"][0] == 15.5 and len(nc["time"]) == 36


def test_luh2_states_are_area_weighted_aggregates_of_the_fine_maps(small_world, small_dir):
    """Away from the no-data pixels of the written maps, the crosswalk aggregation is exact."""
    area = small_world.fine_grid.cell_area_weights()
    with netCDF4.Dataset(small_dir / "luh2_states.nc") as nc:
        for t, year in enumerate(small_world.years):
            lulc = small_world.lulc(year)
            clean = block_sum(lulc == NODATA, small_world.factor) == 0
            fractions = small_world.aggregate(lulc)
            for g, group in enumerate(SCENARIO_GROUPS):
                states = sum(np.ma.filled(nc[v][t], 0.0).astype(np.float64) for v in LUH2_CROSSWALK[group])
                assert np.abs(fractions[g] - states)[clean].max() < 1e-6, (year, group)
            # The groups cover exactly the area of the land that is not inland water.
            non_water = ((lulc != 0) & (lulc != WATER)) * area
            share = block_sum(non_water, small_world.factor) / block_sum(area, small_world.factor)
            np.testing.assert_allclose(small_world.scenario_groups(year).sum(0)[clean], share[clean], atol=1e-6)
            # Area weights matter: near the poles pixel counts would not match.
            assert clean.mean() > 0.8


def test_observed_maps_have_a_few_nodata_pixels_on_land_only(small_world):
    gaps = np.stack([small_world.lulc(year) == NODATA for year in small_world.years])
    assert not gaps[:, ~small_world.land_mask].any()
    assert 0 < gaps.sum() <= 0.005 * gaps.shape[0] * small_world.land_mask.sum()  # about 0.1 % of land per year


@pytest.mark.parametrize("region", [Region(-30, 42, -60, 60), Region(42, 90, 156, -132)])
def test_a_regional_world_has_the_global_geography_at_its_place(small_world, tmp_path, region):
    paths = make_world(tmp_path, seed=0, **SMALL_WORLD, region=region)
    with WorldData.open(tmp_path) as regional:
        assert regional.region == region and set(paths) == set(FILE_NAMES)
        window = small_world.fine_grid.window(region)
        assert regional.fine_grid == window.grid
        np.testing.assert_array_equal(regional.land_mask, window.take(small_world.land_mask))
        for name, field in regional.static.items():
            np.testing.assert_allclose(field, window.take(small_world.static[name]), rtol=1e-6, atol=1e-4, err_msg=name)
        np.testing.assert_allclose(regional.climatology(), window.take(small_world.climatology()), rtol=1e-6)


def test_geography_does_not_depend_on_the_resolution(small_world, tmp_path):
    make_world(tmp_path, seed=0, fine_res=1.5, coarse_res=12.0, first_year=2015, last_year=2015)
    with WorldData.open(tmp_path) as fine:
        area = LatLonGrid.global_grid(3.0).cell_area_weights()
        coarsened = block_sum(fine.land_mask * fine.fine_grid.cell_area_weights(), 2) / area
        assert np.mean((coarsened > 0.5) == small_world.land_mask) > 0.9


def test_land_use_changes_a_little_every_year_and_water_is_static(small_world):
    land = small_world.land_mask
    for year in small_world.years[1:]:
        prev, now = small_world.lulc(year - 1), small_world.lulc(year)
        assert 0.001 < (prev != now)[land].mean() < 0.1
        np.testing.assert_array_equal(prev == WATER, now == WATER)
        np.testing.assert_array_equal(now == 0, ~land)


def test_temperature_falls_with_latitude_and_elevation(small_world):
    tas, elev, land = small_world.static["bio01"], small_world.static["elevation"], small_world.land_mask
    lat = np.broadcast_to(small_world.fine_grid.lat[:, None], tas.shape)
    band_means = [tas[land & (np.abs(lat) >= lo) & (np.abs(lat) < lo + 20)].mean() for lo in (0, 20, 40, 60)]
    assert np.all(np.diff(band_means) < -3.0), band_means
    # Lapse rate: regress on elevation and latitude over land.
    a = np.column_stack([np.ones(land.sum()), elev[land], (lat[land] / 90.0) ** 2])
    coef = np.linalg.lstsq(a, tas[land], rcond=None)[0]
    assert -8e-3 < coef[1] < -5e-3, coef
    assert -100 < tas[land].min() and tas[land].max() < 45


def test_seasons_are_opposite_in_the_hemispheres_and_fluxes_are_physical(small_world):
    lat = small_world.fine_grid.lat
    jan, jul = small_world.drivers(2016, 1), small_world.drivers(2016, 7)
    north, south = lat > 35, lat < -35
    assert jul[0][north].mean() > jan[0][north].mean() + 5.0
    assert jan[0][south].mean() > jul[0][south].mean() + 2.0
    assert jul[2][north].mean() > jan[2][north].mean() + 100.0  # more sun in northern summer
    assert jan[2][lat > 75].max() < 5.0  # polar night (the coarse anomaly may add a little)
    for d in (jan, jul):
        assert d[1].min() >= 0.0 and d[2].min() >= 0.0
        assert d[1].max() < 1e-3  # < 86 mm/day
    annual = np.mean([small_world.drivers(2016, m)[1] for m in range(1, 13)], axis=0)
    mm_day = annual[small_world.land_mask] * 86400
    assert 0.5 < np.median(mm_day) < 4.0


def test_drivers_are_climatology_plus_upsampled_anomaly(small_world, small_dir):
    with netCDF4.Dataset(small_dir / "drivers_climatology.nc") as c, netCDF4.Dataset(small_dir / "drivers_anomaly.nc") as a:
        expected = c["tas"][6] + upsample_blocks(a["tas_anom"][12 + 6], 4)
    np.testing.assert_allclose(small_world.drivers(2016, 7)[0], expected, rtol=1e-6)


def test_lai_is_physical(small_world):
    land, lat = small_world.land_mask, small_world.fine_grid.lat
    lulc = small_world.lulc(2016)
    lai = {m: small_world.lai(2016, m) for m in range(1, 13)}
    for m, x in lai.items():
        assert x.min() >= 0.0 and x[~land].max() == 0.0 and x[lulc == WATER].max() == 0.0 and x.max() < 10.0
    nh_forest = (lulc == FOREST) & (lat[:, None] > 30)
    assert nh_forest.sum() > 10
    assert lai[7][nh_forest].mean() > lai[1][nh_forest].mean() + 0.5
    assert lai[7][lulc == FOREST].mean() > lai[7][lulc == 66].mean() + 1.0  # forest over sparse vegetation
