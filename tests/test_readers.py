"""Readers of the real formats: layouts, regional subsets, checked failures, namelist keys."""
from __future__ import annotations

import shutil

import netCDF4
import numpy as np
import pytest

from ai4land_coupler import datasets
from ai4land_coupler.datasets import BIOCLIM_NAMES, FILE_NAMES, NODATA, STATIC_NAMES, WorldData
from ai4land_coupler.errors import InputFileError, NamelistError
from ai4land_coupler.grids import LatLonGrid, Region, block_sum
from ai4land_coupler.namelist import read_namelist
from ai4land_coupler.world import make_world

YEAR = 2016  # a year of the small world with a previous map


def _real_layout(src_dir, dst_dir):
    """A copy as the real products lay files out: latitude north→south named 'latitude', longitude
    0..360 named 'longitude', no coordinate bounds, and the HILDA+ v2 variable name LULC_states."""
    dst_dir.mkdir()
    rename = {"lat": "latitude", "lon": "longitude", "lulc": "LULC_states"}
    for name in FILE_NAMES.values():
        with netCDF4.Dataset(src_dir / name) as src, netCDF4.Dataset(dst_dir / name, "w") as dst:
            src.set_auto_mask(False)
            half = len(src.dimensions["lon"]) // 2
            for dim in src.dimensions.values():
                dst.createDimension(rename.get(dim.name, dim.name), None if dim.isunlimited() else len(dim))
            for var in src.variables.values():
                if var.name in ("lat_bnds", "lon_bnds"):
                    continue
                data = var[:]
                if "lat" in var.dimensions:
                    data = np.flip(data, axis=var.dimensions.index("lat"))
                if "lon" in var.dimensions:
                    data = np.roll(data, -half, axis=var.dimensions.index("lon"))
                if var.name == "lon":
                    data = np.where(data < 0, data + 360.0, data)
                attrs = {k: var.getncattr(k) for k in var.ncattrs() if k != "bounds"}
                out = dst.createVariable(rename.get(var.name, var.name), var.dtype,
                                         tuple(rename.get(d, d) for d in var.dimensions),
                                         fill_value=attrs.pop("_FillValue", None))
                out.setncatts(attrs)
                out[:] = data
    return dst_dir


def _arrays(w: WorldData) -> dict[str, np.ndarray]:
    out = {"land_mask": w.land_mask, "lulc": w.lulc(YEAR), "scenario": w.scenario_groups(YEAR),
           "drivers": w.drivers(YEAR, 7), "lai": w.lai(YEAR, 7), "climatology": w.climatology()}
    out.update(w.static)
    return out


def _window_of(global_world: WorldData, region: Region) -> dict[str, np.ndarray]:
    """The arrays of ``global_world`` cut to ``region`` (fine fields on the fine grid, coarse on the coarse)."""
    fine, coarse = global_world.fine_grid.window(region), global_world.coarse_grid.window(region)
    out = {k: fine.take(v) for k, v in _arrays(global_world).items()}
    out["scenario"] = coarse.take(global_world.scenario_groups(YEAR))
    # Drivers add the coarse anomaly block-wise, so cutting the fine result equals combining the cut parts.
    return out


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---------------------------------------------------------------- formats and layouts

def test_readers_return_the_package_layout(small_world):
    assert small_world.region == Region(-90, 90, -180, 180)
    assert small_world.fine_grid == LatLonGrid(60, 120, -90.0, -180.0, 3.0, 3.0) and small_world.factor == 4
    assert set(small_world.static) == set(STATIC_NAMES) and len(STATIC_NAMES) == 7
    for name, field in small_world.static.items():
        assert field.shape == small_world.fine_grid.shape and field.dtype == np.float32, name
    for name in BIOCLIM_NAMES:  # WorldClim has no data over ocean: read as 0
        assert np.all(small_world.static[name][~small_world.land_mask] == 0.0) and np.any(small_world.static[name] != 0.0), name


def test_bioclim_follows_the_worldclim_definitions(small_world):
    clim = small_world.climatology().astype(np.float64)
    t_c = clim[:, 0] - 273.15
    p_mm = clim[:, 1] * 86400 * np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[:, None, None]
    land = small_world.land_mask
    np.testing.assert_allclose(small_world.static["bio01"][land], t_c.mean(0)[land], atol=1e-3)
    np.testing.assert_allclose(small_world.static["bio04"][land], 100 * t_c.std(0, ddof=1)[land], rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(small_world.static["bio12"][land], p_mm.sum(0)[land], rtol=1e-4)
    with netCDF4.Dataset(small_world.paths["bioclim"]) as nc:
        assert [nc[n].units for n in BIOCLIM_NAMES] == ["degC", "degC", "mm", "percent"]
        assert "x 100" in nc["bio04"].long_name
    with netCDF4.Dataset(small_world.paths["static"]) as nc:
        assert "tas_annual" not in nc.variables and "pr_annual" not in nc.variables


def test_real_layout_reads_the_same_arrays(small_world, small_dir, tmp_path):
    real = _real_layout(small_dir, tmp_path / "real")
    with netCDF4.Dataset(real / "lulc_maps.nc") as nc:
        assert nc["latitude"][0] > nc["latitude"][-1] and nc["longitude"][0] > 0 and "LULC_states" in nc.variables
    with WorldData.open(real) as w:
        assert (w.fine_grid, w.coarse_grid, w.region) == (small_world.fine_grid, small_world.coarse_grid, small_world.region)
        _assert_same(_arrays(w), _arrays(small_world))


def test_nodata_codes_read_fine(small_world):
    maps = np.stack([small_world.lulc(year) for year in small_world.years])
    assert maps.dtype == np.uint8 and (maps == NODATA).any()


def test_written_maps_aggregate_to_the_luh2_groups_except_at_nodata_pixels(small_world):
    area = small_world.fine_grid.cell_area_weights()
    for year in small_world.years:
        lulc = small_world.lulc(year)
        nodata_share = block_sum((lulc == NODATA) * area, small_world.factor) / block_sum(area, small_world.factor)
        gap = np.abs(small_world.aggregate(lulc) - small_world.scenario_groups(year)).sum(axis=0)
        assert np.all(gap <= nodata_share + 1e-6), year
        assert gap[nodata_share == 0].max() < 1e-6 and (nodata_share == 0).mean() > 0.8


# ---------------------------------------------------------------- regions

@pytest.mark.parametrize("region, snapped", [
    (Region(-30, 40, -50, 60), Region(-30, 42, -60, 60)),
    (Region(-20, 20, 170, -170), Region(-30, 30, 168, 192)),  # across the dateline: two pieces in the file
    (Region(-20, 20, 170, 190), Region(-30, 30, 168, 192)),  # the same box given in 0..360
])
def test_regional_subset_equals_the_subset_of_the_global_arrays(small_world, small_dir, tmp_path, region, snapped):
    with WorldData.open(small_dir, region) as w:
        assert w.region == snapped
        assert w.fine_grid == small_world.fine_grid.window(snapped).grid
        assert w.coarse_grid.refinement_factor(w.fine_grid) == 4
        _assert_same(_arrays(w), _window_of(small_world, snapped))
    with WorldData.open(_real_layout(small_dir, tmp_path / "real"), region) as w:  # the seam at 0 instead
        _assert_same(_arrays(w), _window_of(small_world, snapped))


def test_a_region_outside_the_files_gives_an_error_naming_the_file(tmp_path):
    make_world(tmp_path, seed=0, fine_res=3.0, coarse_res=12.0, first_year=2015, last_year=2015,
               region=Region(7, 29, 1, 47))  # snapped outward to whole 12-degree cells
    with WorldData.open(tmp_path) as w:
        assert w.region == Region(6, 30, 0, 48) and w.fine_grid.shape == (8, 16)
    with pytest.raises(InputFileError, match=r"luh2_states\.nc.*'lat'/'lon'.*not inside"):
        WorldData.open(tmp_path, Region(-60, -40, 0, 10))


def test_region_parsing_normalisation_and_validation():
    assert Region.parse("30,60,-10,40") == Region.from_values([30, 60, -10, 40]) == Region(30.0, 60.0, -10.0, 40.0)
    assert Region(0, 10, 350, 10) == Region(0, 10, -10, 10)
    crossing = Region(0, 10, 170, -170)
    assert (crossing.lon_min, crossing.lon_max, crossing.lon_span) == (170, 190, 20)
    assert Region(-90, 90, 0, 360).lon_span == Region(0, 10, 20, 20).lon_span == 360 and str(crossing) == "0,10,170,190"
    assert Region(0, 10, 170, 10).lon_span == 200 and Region(0, 10, 170, 10).lon_max == 10
    for bad in ("10,0,0,10", "0,10,180,-180", "-95,0,0,10", "0,10,0,400", "0,10,0", "a,b,c,d"):
        with pytest.raises(ValueError):
            Region.parse(bad)


def test_snap_and_window_on_a_grid():
    grid = LatLonGrid.global_grid(12.0)
    assert grid.snap(Region(-20, 20, 170, -170)) == Region(-30, 30, 168, 192)
    win = grid.window(Region(-30, 30, 168, 192))
    assert win.columns == (slice(29, 30), slice(0, 1)) and win.rows == slice(5, 10)
    with pytest.raises(ValueError, match="cell edges"):
        grid.window(Region(-20, 20, 170, -170))
    regional = win.grid
    with pytest.raises(ValueError, match="not inside"):
        regional.snap(Region(40, 50, 168, 192))


# ---------------------------------------------------------------- broken files

@pytest.fixture
def broken(small_dir, tmp_path):
    out = tmp_path / "broken"
    shutil.copytree(small_dir, out)
    return out


def _edit(path, change):
    with netCDF4.Dataset(path, "a") as nc:
        change(nc)


def _replace_variable(nc, name, dims, dtype, data):
    nc.renameVariable(name, f"{name}_old")
    nc.createVariable(name, dtype, dims)[:] = data


def test_missing_variable(broken):
    _edit(broken / "static.nc", lambda nc: nc.renameVariable("slope", "slope_renamed"))
    with pytest.raises(InputFileError, match=r"static\.nc: variable 'slope' is missing"):
        WorldData.open(broken)


def test_missing_class_map_variable(broken):
    _edit(broken / "lulc_maps.nc", lambda nc: nc.renameVariable("lulc", "classes"))
    with pytest.raises(InputFileError, match=r"lulc_maps\.nc: variable 'lulc' or 'LULC_states' is missing"):
        WorldData.open(broken)


def test_wrong_units(broken):
    _edit(broken / "luh2_states.nc", lambda nc: setattr(nc["c3ann"], "units", "%"))
    with pytest.raises(InputFileError, match=r"luh2_states\.nc: variable 'c3ann' has units '%'"):
        WorldData.open(broken)
    _edit(broken / "luh2_states.nc", lambda nc: setattr(nc["c3ann"], "units", "1"))
    _edit(broken / "bioclim.nc", lambda nc: setattr(nc["bio01"], "units", "K"))
    with pytest.raises(InputFileError, match=r"bioclim\.nc: variable 'bio01' has units 'K'"):
        WorldData.open(broken)
    _edit(broken / "bioclim.nc", lambda nc: setattr(nc["bio01"], "units", "degC"))
    _edit(broken / "lai_monthly.nc", lambda nc: setattr(nc["lai"], "units", "1"))
    with WorldData.open(broken) as w, pytest.raises(InputFileError, match=r"lai_monthly\.nc: variable 'lai' has units"):
        w.lai(2015, 1)


def test_wrong_dimensions(broken):
    _edit(broken / "bioclim.nc", lambda nc: _replace_variable(nc, "bio12", ("lon", "lat"), "f4", nc["bio12"][:].T))
    with pytest.raises(InputFileError, match=r"bioclim\.nc: variable 'bio12' has dimensions \('lon', 'lat'\)"):
        WorldData.open(broken)


def test_values_out_of_range(broken):
    _edit(broken / "static.nc", lambda nc: nc["soil_quality"].__setitem__((0, 0), 3.0))
    with pytest.raises(InputFileError, match=r"static\.nc: variable 'soil_quality' has values in .*valid range"):
        WorldData.open(broken)


def test_missing_values_on_land(small_world, broken):
    j, i = np.argwhere(small_world.land_mask)[0]
    _edit(broken / "bioclim.nc", lambda nc: nc["bio12"].__setitem__((j, i), np.ma.masked))
    with pytest.raises(InputFileError, match=r"bioclim\.nc: variable 'bio12' has missing values on land"):
        WorldData.open(broken)


def test_group_sums_above_one(small_world, broken):
    j, i = np.argwhere(small_world.scenario_groups(2015).sum(0) > 0.5)[0]
    _edit(broken / "luh2_states.nc", lambda nc: nc["primf"].__setitem__((0, j, i), 0.9))
    with WorldData.open(broken) as w, pytest.raises(InputFileError, match=r"luh2_states\.nc: variables primf\+.* > 1"):
        w.scenario_groups(2015)


def test_block_reads_give_the_values_of_single_steps(small_dir, monkeypatch):
    """Years and months are read in blocks (datasets.SCENARIO_BLOCK, ANOMALY_BLOCK): the same arrays
    as read one time step at a time, in any order of requests."""
    with WorldData.open(small_dir) as w:
        years, months = w.scenario_years, w.driver_months()[:14]
        blocked = ({y: w.scenario_groups(y) for y in reversed(years)}, {m: w.drivers(*m) for m in months})
    monkeypatch.setattr(datasets, "SCENARIO_BLOCK", 1)
    monkeypatch.setattr(datasets, "ANOMALY_BLOCK", 1)
    with WorldData.open(small_dir) as w:
        for y in years:
            np.testing.assert_array_equal(w.scenario_groups(y), blocked[0][y])
        for m in months:
            np.testing.assert_array_equal(w.drivers(*m), blocked[1][m])


def test_a_bad_year_fails_only_when_it_is_read(small_world, broken):
    """A value out of range in the last year of a block: the years before it still read."""
    _edit(broken / "luh2_states.nc", lambda nc: nc["pastr"].__setitem__((2, 0, 0), 1.5))
    with WorldData.open(broken) as w:
        np.testing.assert_array_equal(w.scenario_groups(2015), small_world.scenario_groups(2015))
        np.testing.assert_array_equal(w.scenario_groups(2016), small_world.scenario_groups(2016))
        with pytest.raises(InputFileError, match=r"luh2_states\.nc: variable 'pastr' has values in .*valid range"):
            w.scenario_groups(2017)


@pytest.mark.parametrize("name", ["luh2_states.nc", "lai_monthly.nc"])
def test_truncated_file(broken, name):
    path = broken / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputFileError, match=rf"{name}: not a readable netCDF file, or truncated.*variables '(primf|lai)'"):
        with WorldData.open(broken) as w:
            w.lai(2015, 1)


def test_not_a_netcdf_file(broken):
    (broken / "lulc_maps.nc").write_text("year,class\n2015,44\n")
    with pytest.raises(InputFileError, match=r"lulc_maps\.nc: not a readable netCDF file.*'lulc', 'LULC_states'"):
        WorldData.open(broken)


def test_unknown_class_code(broken):
    _edit(broken / "lulc_maps.nc", lambda nc: nc["lulc"].__setitem__((1, 0, 0), 50))
    with WorldData.open(broken) as w:
        w.lulc(2015)
        with pytest.raises(InputFileError, match=r"lulc_maps\.nc: variable 'lulc' has unknown codes \[50\] in year 2016"):
            w.lulc(2016)


def test_non_integer_class_codes(broken):
    def to_float(nc):
        codes = nc["lulc"][:].astype(np.float32)
        codes[0, 0, 0] = 22.5
        _replace_variable(nc, "lulc", ("time", "lat", "lon"), "f4", codes)
    _edit(broken / "lulc_maps.nc", to_float)
    with WorldData.open(broken) as w, pytest.raises(InputFileError, match=r"lulc_maps\.nc: variable 'lulc' has non-integer"):
        w.lulc(2015)


def test_missing_file_and_missing_year(small_world, broken):
    with pytest.raises(InputFileError, match=r"lulc_maps\.nc.*year 2040"):
        small_world.lulc(2040)
    (broken / "bioclim.nc").unlink()
    with pytest.raises(InputFileError, match=r"bioclim\.nc: file not found.*'bio01'"):
        WorldData.open(broken)


# ---------------------------------------------------------------- namelist keys

def _namelist(tmp_path, body: str):
    path = tmp_path / "run" / "ai4land.nml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"&ai4land_nml\n  host_nlat = 15\n  host_nlon = 30\n{body}/\n")
    return path


def test_namelist_file_keys_and_region_are_resolved(small_world, small_dir, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(small_dir / "lulc_maps.nc", other / "hildaplus_states.nc")
    path = _namelist(tmp_path, f"  input_dir = '{small_dir}'\n  lulc_file = '../elsewhere/hildaplus_states.nc'\n"
                               "  region = -20, 20, 170, -170\n")
    cfg = read_namelist(path)
    assert cfg.lulc_file == str(other / "hildaplus_states.nc")
    assert cfg.static_file == str(small_dir / "static.nc") and cfg.lai_file == str(small_dir / "lai_monthly.nc")
    assert cfg.region == Region(-20, 20, 170, -170)
    with WorldData.from_config(cfg) as w, WorldData.open(small_dir, cfg.region) as expected:
        assert w.paths["lulc_maps"] == other / "hildaplus_states.nc"
        _assert_same(_arrays(w), _arrays(expected))


def test_namelist_without_input_dir_names_every_required_file(small_dir, tmp_path):
    keys = {"static_file": "static.nc", "bioclim_file": "bioclim.nc", "luh2_file": "luh2_states.nc",
            "lulc_file": "lulc_maps.nc"}
    body = "".join(f"  {k} = '{small_dir / v}'\n" for k, v in keys.items())
    cfg = read_namelist(_namelist(tmp_path, body))
    assert cfg.input_dir == "" and cfg.lai_file == "" and cfg.region is None
    assert set(cfg.world_files()) == {"static", "bioclim", "luh2_states", "lulc_maps"}
    with pytest.raises(NamelistError, match=r"key 'input_dir' is required: key 'bioclim_file' is empty"):
        read_namelist(_namelist(tmp_path, body.replace(f"'{small_dir / 'bioclim.nc'}'", "''")))


@pytest.mark.parametrize("body, message", [
    ("  luh2_file = 'missing/luh2.nc'\n", r"key 'luh2_file': file .*run/missing/luh2\.nc does not exist"),
    ("  lai_file = '/nonexistent/lai.nc'\n", r"key 'lai_file': file /nonexistent/lai\.nc does not exist"),
    ("  region = 60, 30, 0, 10\n", r"key 'region': region latitudes must satisfy"),
    ("  region = 0, 10, 20\n", r"key 'region': a region is 4 numbers"),
    ("  region = 'europe'\n", r"key 'region': a region is 4 numbers"),
])
def test_namelist_errors_name_the_file_and_the_key(small_dir, tmp_path, body, message):
    path = _namelist(tmp_path, f"  input_dir = '{small_dir}'\n{body}")
    with pytest.raises(NamelistError, match=message) as err:
        read_namelist(path)
    assert str(path) in str(err.value)


def test_namelist_input_dir_must_hold_the_required_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NamelistError, match=r"key 'static_file': file .*empty/static\.nc does not exist"):
        read_namelist(_namelist(tmp_path, f"  input_dir = '{tmp_path / 'empty'}'\n"))
