"""CF conventions of every output file: the plugin's fine-grid history, the Python mock host's file and
both Fortran mock hosts' files, each made by a real run on the small world (docs/outputs.md).

cfchecker needs UDUNITS and the CF standard-name table from the internet, so a strict checker here
does its part: Conventions, standard names and their canonical units, units on every field,
flag variables, coordinate bounds (shape, contiguity, containing their coordinate), calendars and
time units (parsed by cftime), cell_methods grammar and names, and `coordinates` references.
Each file is also opened with xarray, which must decode its times in the file's calendar.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import cftime
import numpy as np
import pytest

from conftest import run_lifecycle, run_mpi, unstructured_mesh, write_namelist
from test_fortran_host import BUILD, MOCK_HOST, needs_build, needs_component, output_of, write_host_nml

netCDF4 = pytest.importorskip("netCDF4")
xr = pytest.importorskip("xarray")

# From the CF standard-name table (version 84): the names these files use and their canonical units.
CANONICAL_UNITS = {
    "area_fraction": "1",
    "leaf_area_index": "1",
    "latitude": "degrees_north",
    "longitude": "degrees_east",
    "time": "<time unit> since <epoch>",
}
EXPECTED_STANDARD_NAMES = {"landuse_fraction": "area_fraction", "lai": "leaf_area_index", "lat": "latitude",
                           "lon": "longitude", "time": "time", "year": "time", "year_time": "time"}
CF_METHODS = {"point", "sum", "maximum", "median", "mid_range", "minimum", "mean", "mode",
              "standard_deviation", "variance"}
AREA_TYPES = {"land"}  # the CF area-type table's entries used in `where` clauses here
CALENDARS = {"standard", "gregorian", "proleptic_gregorian", "noleap", "365_day", "all_leap", "366_day",
             "360_day", "julian", "none"}
CELL_METHOD = re.compile(r"\s*((?:\w+:\s*)+)(\w+)(?:\s+where\s+(\w+)(?:\s+over\s+(\w+))?)?"
                         r"(?:\s+(?:within|over)\s+(?:days|years))?(?:\s*\([^)]*\))?")

HOST_NLAT, HOST_NLON, START_YEAR, NYEARS = 15, 30, 2016, 2  # the small world's scenario grid, 2016-2017


# ----------------------------------------------------------------------------- the checker


def parse_cell_methods(text: str) -> list[tuple[list[str], str, str | None]]:
    """``"area: mean where land time: mean"`` -> [(["area"], "mean", "land"), (["time"], "mean", None)]."""
    parsed, pos = [], 0
    while pos < len(text.rstrip()):
        m = CELL_METHOD.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cell_methods {text!r}: cannot parse from {text[pos:]!r}")
        parsed.append(([n.strip() for n in m.group(1).split(":") if n.strip()], m.group(2), m.group(3)))
        pos = m.end()
    return parsed


def time_axis_problems(name, var) -> list[str]:
    problems = []
    calendar = getattr(var, "calendar", None)
    if calendar not in CALENDARS:
        problems.append(f"{name}: calendar {calendar!r} is not a CF calendar")
        return problems
    try:
        cftime.num2date(np.asarray(var[:], dtype=float), var.units, calendar=calendar)
    except Exception as exc:  # cftime's own message says what is wrong with the units
        problems.append(f"{name}: units {getattr(var, 'units', None)!r} do not parse as CF time: {exc}")
    if var.size > 1 and np.any(np.diff(np.asarray(var[:])) <= 0):
        problems.append(f"{name}: time values are not increasing")
    return problems


def bounds_problems(ds, name: str) -> list[str]:
    var, bname = ds[name], ds[name].bounds
    if bname not in ds.variables:
        return [f"{name}: bounds variable {bname!r} does not exist"]
    b = ds[bname]
    if b.dimensions[:-1] != var.dimensions or ds.dimensions[b.dimensions[-1]].size != 2:
        return [f"{bname}: dimensions {b.dimensions} are not {var.dimensions} + (2,)"]
    problems = [f"{bname}: attribute {att} {b.getncattr(att)!r} differs from {name}'s"
                for att in ("units", "calendar") if att in b.ncattrs() and b.getncattr(att) != var.getncattr(att)]
    values, edges = var[:], b[:]
    if np.ma.is_masked(edges) or np.ma.is_masked(values):
        return problems + [f"{bname}: has missing values"]
    values, edges = np.asarray(values, dtype=float), np.asarray(edges, dtype=float)
    if edges.shape != values.shape + (2,):
        return problems + [f"{bname}: shape {edges.shape} is not {values.shape + (2,)}"]
    if np.any(edges[..., 0] >= edges[..., 1]):
        problems.append(f"{bname}: a cell's lower bound is not below its upper bound")
    if np.any(values < edges[..., 0]) or np.any(values > edges[..., 1]):
        problems.append(f"{bname}: a value of {name} lies outside its cell")
    if var.ndim == 1 and not np.allclose(edges[1:, 0], edges[:-1, 1], rtol=0, atol=1e-9):
        problems.append(f"{bname}: cells are not contiguous")
    return problems


def cf_problems(path: Path, unbounded: tuple[str, ...] = ()) -> list[str]:
    """Everything in ``path`` that breaks the conventions of docs/outputs.md; ``unbounded`` names the
    coordinates allowed to go without bounds."""
    problems = []
    with netCDF4.Dataset(path) as ds:
        conventions = getattr(ds, "Conventions", "")
        m = re.fullmatch(r"CF-1\.(\d+)", conventions)
        if not m or int(m.group(1)) < 8:
            problems.append(f"Conventions {conventions!r} is not CF-1.8 or later")
        variables = ds.variables
        bounds = {v.bounds for v in variables.values() if "bounds" in v.ncattrs()}
        auxiliary = {n for v in variables.values() for n in getattr(v, "coordinates", "").split()}
        coordinate_vars = {n for n, v in variables.items() if v.dimensions == (n,)}
        data_vars = [n for n in variables if n not in bounds | auxiliary | coordinate_vars]

        for name, var in variables.items():
            std = getattr(var, "standard_name", None)
            if name in EXPECTED_STANDARD_NAMES and std != EXPECTED_STANDARD_NAMES[name]:
                problems.append(f"{name}: standard_name {std!r} is not {EXPECTED_STANDARD_NAMES[name]!r}")
            if std is None:
                continue
            if std not in CANONICAL_UNITS:
                problems.append(f"{name}: standard_name {std!r} is not one of {sorted(CANONICAL_UNITS)}")
            elif std == "time":
                problems += time_axis_problems(name, var)
            elif getattr(var, "units", None) != CANONICAL_UNITS[std]:
                problems.append(f"{name}: units {getattr(var, 'units', None)!r} are not {std}'s "
                                f"canonical {CANONICAL_UNITS[std]!r}")

        for name in sorted(coordinate_vars | auxiliary):
            if name not in variables:
                continue  # reported with the variable that names it
            var = variables[name]
            std = getattr(var, "standard_name", None)
            if std is None and not hasattr(var, "long_name"):
                problems.append(f"{name}: coordinate without standard_name or long_name")
            if "bounds" in var.ncattrs():
                problems += bounds_problems(ds, name)
            elif std in ("latitude", "longitude", "time") and name in coordinate_vars and name not in unbounded:
                problems.append(f"{name}: {std} coordinate without bounds")

        for name in data_vars:
            var = variables[name]
            attrs = var.ncattrs()
            if "flag_values" in attrs:
                flags = np.atleast_1d(var.flag_values)
                meanings = getattr(var, "flag_meanings", "").split()
                if len(meanings) != flags.size or np.unique(flags).size != flags.size:
                    problems.append(f"{name}: flag_values {flags} do not match flag_meanings {meanings}")
                values = np.ma.compressed(var[:])
                if not np.isin(values, flags).all():
                    problems.append(f"{name}: values outside flag_values")
            elif "units" not in attrs:
                problems.append(f"{name}: no units")
            if "standard_name" not in attrs and "long_name" not in attrs:
                problems.append(f"{name}: no standard_name or long_name")
            coords = getattr(var, "coordinates", "").split()
            for c in coords:
                if c not in variables:
                    problems.append(f"{name}: coordinates names {c!r}, which does not exist")
                    continue
                dims = variables[c].dimensions
                if variables[c].dtype == np.dtype("S1"):
                    dims = dims[:-1]  # a label's last dimension is its string length
                if not set(dims) <= set(var.dimensions):
                    problems.append(f"{name}: coordinate {c} has dimensions {dims} outside {var.dimensions}")
            located = {d for c in coords if c in variables for d in variables[c].dimensions}
            for dim in var.dimensions:
                if dim not in coordinate_vars and dim not in located:
                    problems.append(f"{name}: dimension {dim} has no coordinate")
            if "cell_methods" not in attrs:
                problems.append(f"{name}: no cell_methods")
                continue
            axis_names = set(var.dimensions) | {getattr(variables[c], "standard_name", "")
                                                for c in [*var.dimensions, *coords] if c in variables}
            horizontal = {"latitude", "longitude"} <= axis_names
            try:
                methods = parse_cell_methods(var.cell_methods)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            for names, method, where in methods:
                for n in names:
                    if not (n in axis_names or (n == "area" and horizontal)):
                        problems.append(f"{name}: cell_methods name {n!r} is no dimension or coordinate of it")
                if method not in CF_METHODS:
                    problems.append(f"{name}: cell_methods method {method!r} is not a CF method")
                if where is not None and where not in AREA_TYPES:
                    problems.append(f"{name}: cell_methods area type {where!r} is not in the CF area-type table")
    return problems


# ----------------------------------------------------------------------------- the outputs


@pytest.fixture(scope="module", params=["noleap", "360_day"])
def history_file(request, small_dir, tmp_path_factory) -> Path:
    """The fine-grid history of a 2016-2017 run: land use twice, LAI in Jan 2016, Feb 2016 and Jan 2017."""
    from ai4land_coupler.partition import Box

    folder = tmp_path_factory.mktemp(f"history_{request.param}")
    nml = write_namelist(folder / "a.nml", small_dir, host_nlat=HOST_NLAT, host_nlon=HOST_NLON,
                         output_dir=f"'{folder / 'out'}'", calendar=f"'{request.param}'")
    run_lifecycle(None, nml, Box(0, 0, HOST_NLON, HOST_NLAT), [(2016, 1, 1, 0), (2016, 2, 1, 0), (2017, 1, 1, 0)],
                  HOST_NLAT, HOST_NLON)
    return folder / "out" / "ai4land_fine_history.nc"


def host_namelists(folder: Path, small_dir: Path) -> tuple[Path, Path]:
    plugin = write_namelist(folder / "ai4land_in", small_dir, host_nlat=HOST_NLAT, host_nlon=HOST_NLON)
    out = folder / "host_out.nc"
    host = write_host_nml(folder / "host.nml", plugin, out, nlat=HOST_NLAT, nlon=HOST_NLON, start_year=START_YEAR,
                          nyears=NYEARS)
    return host, out


@pytest.fixture(scope="module")
def python_host_file(small_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("python_host")
    nml, out = host_namelists(folder, small_dir)
    proc = run_mpi(2, [sys.executable, "-m", "ai4land_coupler.cli", "mock-host", str(nml)], cwd=folder)
    assert proc.returncode == 0, output_of(proc)
    return out


@pytest.fixture(scope="module")
def fortran_host_file(small_dir, tmp_path_factory) -> Path:
    if not MOCK_HOST.exists():
        pytest.skip(f"no Fortran mock host in {BUILD}")
    folder = tmp_path_factory.mktemp("fortran_host")
    nml, out = host_namelists(folder, small_dir)
    proc = run_mpi(2, [str(MOCK_HOST), str(nml)], cwd=folder)
    assert proc.returncode == 0, output_of(proc)
    return out


@pytest.fixture(scope="module")
def points_host_file(small_dir, small_world, tmp_path_factory) -> tuple[Path, Path]:
    """The unstructured Fortran host's file and its weights file (a 40-cell Voronoi mesh)."""
    from ai4land_coupler.hostmap import write_weights_file

    exe = BUILD / "ai4land_mock_host_points"
    if not exe.exists():
        pytest.skip(f"no Fortran points host in {BUILD}")
    folder = tmp_path_factory.mktemp("points_host")
    owner, ncells = unstructured_mesh(small_world.fine_grid, 40, seed=1)
    weights = write_weights_file(folder / "mesh.nc", small_world.fine_grid, owner, ncells)
    plugin = write_namelist(folder / "ai4land_in", small_dir, host_weights_file=f"'{weights}'")
    out = folder / "points_out.nc"
    nml = folder / "points.nml"
    nml.write_text(f"&points_host_nml\n  weights_file = '{weights}'\n  start_year = {START_YEAR}\n  nyears = {NYEARS}\n"
                   f"  output_file = '{out}'\n  ai4land_namelist = '{plugin}'\n/\n")
    proc = run_mpi(3, [str(exe), str(nml)], cwd=folder)
    assert proc.returncode == 0, output_of(proc)
    return out, weights


# ----------------------------------------------------------------------------- the checker catches what it should


def test_cell_methods_grammar():
    assert parse_cell_methods("area: mean where land year: mean") == [(["area"], "mean", "land"), (["year"], "mean", None)]
    assert parse_cell_methods("lat: lon: mean (interval: 2 degrees) time: maximum within days") == [
        (["lat", "lon"], "mean", None), (["time"], "maximum", None)]
    for bad in ("mean", "time mean", "time: mean area:"):
        with pytest.raises(ValueError):
            parse_cell_methods(bad)


@needs_build
@needs_component
@pytest.mark.parametrize("variable, attribute, problem", [
    (None, "Conventions", "Conventions '' is not CF-1.8"),
    ("landuse_fraction", "units", "landuse_fraction: units None are not area_fraction's canonical '1'"),
    ("landuse_uncertainty", "units", "landuse_uncertainty: no units"),
    ("lai", "cell_methods", "lai: no cell_methods"),
    ("lai", "standard_name", "lai: standard_name None is not 'leaf_area_index'"),
    ("lat", "bounds", "lat: latitude coordinate without bounds"),
    ("year", "bounds", "year: time coordinate without bounds"),
    ("time", "calendar", "time: calendar None is not a CF calendar"),
    ("landuse_fraction", "coordinates", "class_name: no units"),  # an unreferenced label reads as data
])
def test_checker_reports_a_removed_attribute(fortran_host_file, tmp_path, variable, attribute, problem):
    broken = tmp_path / "broken.nc"
    shutil.copy(fortran_host_file, broken)
    with netCDF4.Dataset(broken, "a") as ds:
        (ds if variable is None else ds[variable]).delncattr(attribute)
    assert any(p.startswith(problem) for p in cf_problems(broken)), cf_problems(broken)


@needs_build
@needs_component
def test_checker_reports_wrong_values(fortran_host_file, tmp_path):
    broken = tmp_path / "broken.nc"
    shutil.copy(fortran_host_file, broken)
    with netCDF4.Dataset(broken, "a") as ds:
        ds["lai"].standard_name = "leaf_area"
        ds["landuse_fraction"].units = "%"
        ds["landuse_uncertainty"].cell_methods = "area: mean where forest year: average"
        ds["lat_bnds"][3, 0] -= 1.0
        ds["time"].units = "months of 2016"
        ds["landuse_fraction"].coordinates = "class_name cell_name"
    problems = cf_problems(broken)
    for expected in ("lai: standard_name 'leaf_area'", "landuse_fraction: units '%'",
                     "landuse_uncertainty: cell_methods method 'average'",
                     "landuse_uncertainty: cell_methods area type 'forest'", "lat_bnds: cells are not contiguous",
                     "time: units 'months of 2016' do not parse", "landuse_fraction: coordinates names 'cell_name'"):
        assert any(p.startswith(expected) for p in problems), (expected, problems)


# ----------------------------------------------------------------------------- the fine-grid history


@needs_component
def test_history_is_cf_compliant(history_file):
    assert cf_problems(history_file, unbounded=("time",)) == []
    with netCDF4.Dataset(history_file) as ds:
        assert ds.Conventions == "CF-1.10"
        assert ds["lai"].standard_name == "leaf_area_index" and ds["lai"].units == "1"
        assert ds["lai"].cell_methods == "time: mean" and "bounds" not in ds["time"].ncattrs()
        assert ds["landuse_uncertainty"].cell_methods == "year_time: mean"
        assert ds["lulc"].cell_methods == "year_time: mode"
        assert ds["lulc"].flag_meanings.split()[:3] == ["ocean", "urban", "cropland"]
        assert list(ds["lulc"].flag_values) == [0, 11, 22, 33, 44, 55, 66, 77]
        assert ds["lat_bnds"][0, 0] == -90.0 and ds["lat_bnds"][-1, 1] == 90.0
        assert ds["lon_bnds"][0, 0] == -180.0 and ds["lon_bnds"][-1, 1] == 180.0


@needs_component
def test_history_opens_with_xarray_in_its_calendar(history_file):
    with netCDF4.Dataset(history_file) as ds:
        calendar = ds["time"].calendar
    year_days = 360 if calendar == "360_day" else 365
    with xr.open_dataset(history_file) as ds:
        assert ds["lai"].attrs["standard_name"] == "leaf_area_index"
        assert ds["landuse_uncertainty"].dims == ("year_time", "lat", "lon")
        times = ds["time"].values
        assert all(t.calendar == calendar for t in times)
        assert [(t.year, t.month, t.day) for t in times] == [(2016, 1, 1), (2016, 2, 1), (2017, 1, 1)]
        assert [t.year for t in ds["year_time"].values] == [2016, 2017]
        edges = ds[ds["year_time"].attrs["bounds"]].values
        assert [[(t.year, t.month, t.day) for t in row] for row in edges] == [
            [(2016, 1, 1), (2017, 1, 1)], [(2017, 1, 1), (2018, 1, 1)]]
        assert all((end - start).days == year_days for start, end in edges)
        assert float(ds["landuse_uncertainty"].min()) >= 0.0 and float(ds["landuse_uncertainty"].max()) <= 1.0
        assert float(ds["lai"].min()) >= 0.0 and float(ds["lai"].max()) > 1.0


# ----------------------------------------------------------------------------- the mock hosts' files


def check_host_file(path: Path, nyears: int = NYEARS) -> None:
    """Host-file values as xarray decodes them: yearly land-use records bounded by their year, monthly
    LAI records bounded by the next record or the end of the run, noleap, fractions summing to 1."""
    with xr.open_dataset(path) as ds:
        years = ds["year"].values
        assert all(isinstance(t, cftime.DatetimeNoLeap) for t in years)
        assert [(t.year, t.month, t.day) for t in years] == [(START_YEAR + k, 1, 1) for k in range(nyears)]
        assert [[t.year for t in row] for row in ds["year_bnds"].values] == [
            [START_YEAR + k, START_YEAR + k + 1] for k in range(nyears)]
        times = ds["time"].values
        assert [(t.year, t.month, t.day) for t in times] == [(START_YEAR + k, m, 1) for k in range(nyears)
                                                             for m in range(1, 13)]
        edges = ds["time_bnds"].values
        assert list(edges[:, 0]) == list(times) and list(edges[:-1, 1]) == list(times[1:])
        assert (edges[-1, 1].year, edges[-1, 1].month, edges[-1, 1].day) == (START_YEAR + nyears, 1, 1)
        assert [(e - s).days for s, e in edges[:3]] == [31, 28, 31]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in ds["class_name"].values]
        assert names == ["ocean", "urban", "cropland", "pasture_rangeland", "forest", "grass_shrubland",
                         "sparse_vegetation", "water"]
        frac = ds["landuse_fraction"]
        assert "class_name" in frac.coords and frac.attrs["standard_name"] == "area_fraction"
        np.testing.assert_allclose(frac.sum("class").values, 1.0, atol=1e-6)
        assert frac.attrs["cell_methods"] == "area: mean year: mean"
        assert ds["lai"].attrs["cell_methods"] == "area: mean time: mean"
        assert float(ds["lai"].min()) >= 0.0 and float(ds["lai"].max()) > 1.0


def check_latlon_host_file(path: Path) -> None:
    assert cf_problems(path) == []
    check_host_file(path)
    with xr.open_dataset(path) as ds:
        assert ds.attrs["Conventions"] == "CF-1.10"
        assert ds["landuse_fraction"].dims == ("year", "class", "lat", "lon")
        lat_edges, lon_edges = ds[ds["lat"].attrs["bounds"]].values, ds[ds["lon"].attrs["bounds"]].values
        np.testing.assert_allclose(lat_edges[:, 0], -90.0 + 12.0 * np.arange(HOST_NLAT))
        np.testing.assert_allclose(lon_edges[:, 1], -180.0 + 12.0 * np.arange(1, HOST_NLON + 1))
        np.testing.assert_allclose(ds["lat"].values, lat_edges.mean(axis=1))
        assert ds["landuse_uncertainty"].attrs["cell_methods"] == "area: mean where land year: mean"
        assert ds["landuse_uncertainty"].attrs["units"] == "1"


@needs_component
def test_python_host_output_is_cf_compliant(python_host_file):
    check_latlon_host_file(python_host_file)


@needs_build
@needs_component
def test_fortran_host_output_is_cf_compliant(fortran_host_file):
    check_latlon_host_file(fortran_host_file)


@needs_build
@needs_component
def test_python_and_fortran_hosts_write_the_same_layout(python_host_file, fortran_host_file):
    with netCDF4.Dataset(python_host_file) as py, netCDF4.Dataset(fortran_host_file) as f:
        assert set(py.variables) == set(f.variables)
        for name in py.variables:
            assert py[name].dimensions == f[name].dimensions, name
            cf = ("standard_name", "units", "calendar", "bounds", "cell_methods", "coordinates", "axis")
            assert ({a: py[name].getncattr(a) for a in cf if a in py[name].ncattrs()}
                    == {a: f[name].getncattr(a) for a in cf if a in f[name].ncattrs()}), name
        for name in ("lat_bnds", "lon_bnds", "year", "year_bnds", "time", "time_bnds", "class"):
            np.testing.assert_array_equal(py[name][:], f[name][:], err_msg=name)


@needs_build
@needs_component
def test_points_host_output_is_cf_compliant(points_host_file, tmp_path):
    path, weights = points_host_file
    assert cf_problems(path) == []
    check_host_file(path)
    with netCDF4.Dataset(weights) as w:
        yc, xc = w["yc_b"][:], w["xc_b"][:]
    with xr.open_dataset(path) as ds:
        frac = ds["landuse_fraction"]
        assert frac.dims == ("year", "class", "cell")
        assert {"lat", "lon", "class_name"} <= set(frac.coords) and {"lat", "lon"} <= set(ds["lai"].coords)
        assert ds["lat"].attrs["standard_name"] == "latitude" and ds["lon"].attrs["units"] == "degrees_east"
        np.testing.assert_array_equal(ds["lat"].values, yc)
        np.testing.assert_array_equal(ds["lon"].values, xc)
        assert "bounds" not in ds["lat"].attrs  # the weights file gives no cell corners (docs/outputs.md)
    broken = tmp_path / "broken.nc"
    shutil.copy(path, broken)
    with netCDF4.Dataset(broken, "a") as ds:
        ds["lai"].delncattr("coordinates")
    problems = cf_problems(broken)
    assert "lai: dimension cell has no coordinate" in problems, problems
    assert any(p.startswith("lai: cell_methods name 'area'") for p in problems), problems
