"""CF-netCDF history of the fine-grid emulator output: one file written by one rank, or one file
per slab of rows written by each inference rank (namelist ``history_files``), which
:func:`join_history` joins into the one file.

Each record is synced to disk when written, so a crash loses at most the record in flight.
Conventions (standard names, cell methods, time bounds): docs/outputs.md.
"""
from __future__ import annotations

from pathlib import Path

import cftime
import numpy as np

from .grids import LatLonGrid

CONVENTIONS = "CF-1.10"
TIME_UNITS = "days since 1850-01-01 00:00:00"
FILE_NAME = "ai4land_fine_history.nc"
FIELDS = {"year_time": ("lulc", "landuse_uncertainty"), "time": ("lai",)}  # record dimension → its variables


def history_path(output_dir: str | Path, slab: int | None = None) -> Path:
    """The history file in ``output_dir``: the one file, or that of a slab."""
    return Path(output_dir) / (FILE_NAME if slab is None else f"ai4land_fine_history_slab{slab:04d}.nc")


def add_latlon(ds, grid: LatLonGrid) -> None:
    """CF lat/lon coordinates with bounds (and the bounds dimension ``nv``) on an open netCDF4 Dataset."""
    ds.createDimension("lat", grid.nlat)
    ds.createDimension("lon", grid.nlon)
    ds.createDimension("nv", 2)
    for name, centres, bounds, units, std, axis in (
        ("lat", grid.lat, grid.lat_bounds, "degrees_north", "latitude", "Y"),
        ("lon", grid.lon, grid.lon_bounds, "degrees_east", "longitude", "X"),
    ):
        v = ds.createVariable(name, "f8", (name,))
        v[:] = centres
        v.units, v.standard_name, v.axis, v.bounds = units, std, axis, f"{name}_bnds"
        b = ds.createVariable(f"{name}_bnds", "f8", (name, "nv"))
        b[:] = bounds


def add_time(ds, name: str, units: str, calendar: str, size: int | None = None, bounded: bool = True):
    """A CF time coordinate ``name(name)`` (unlimited unless ``size``), with bounds ``name_bnds(name, nv)``
    when ``bounded``; needs the ``nv`` dimension of :func:`add_latlon`. Returns the coordinate variable."""
    ds.createDimension(name, size)
    t = ds.createVariable(name, "f8", (name,))
    t.units, t.calendar, t.standard_name, t.axis = units, calendar, "time", "T"
    if bounded:
        t.bounds = f"{name}_bnds"
        ds.createVariable(t.bounds, "f8", (name, "nv"))
    return t


class FineHistory:
    """The fine-grid history: land use per model year (time bounds: the calendar year) and LAI per
    emulated period (time: the period's first step; no bounds, as the period length is the
    namelist's LAI cadence, which this writer does not see).

    With ``slab = (index, count, first row, end row)`` it is that slab's file: the grid's rows
    [first, end), the slab's place in global attributes (``ai4land_slab``, ``ai4land_slabs``,
    ``ai4land_rows``, ``ai4land_grid_rows``) for :func:`join_history`. A slab without rows has no file."""

    def __init__(self, output_dir: str | Path, grid: LatLonGrid, calendar: str, classes,
                 slab: tuple[int, int, int, int] | None = None):
        import netCDF4

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        self.path = history_path(output_dir, None if slab is None else slab[0])
        self.calendar = calendar
        ds = self.ds = netCDF4.Dataset(self.path, "w")
        ds.Conventions = CONVENTIONS
        ds.title = "ai4land-coupler emulated land use and leaf area index on the emulator grid"
        ds.source = "ai4land_coupler U-Net emulators"
        if slab is not None:
            index, count, first, end = slab
            ds.ai4land_slab, ds.ai4land_slabs, ds.ai4land_grid_rows = index, count, grid.nlat
            ds.ai4land_rows = np.array([first, end], dtype=np.int64)
            grid = grid.rows(first, end)
        add_latlon(ds, grid)
        add_time(ds, "year_time", TIME_UNITS, calendar).long_name = "time of the model year's land-use update"
        add_time(ds, "time", TIME_UNITS, calendar, bounded=False).long_name = "first step of the LAI period"
        lu = ds.createVariable("lulc", "u1", ("year_time", "lat", "lon"), zlib=True, complevel=1)
        lu.long_name = "land use / land cover class (HILDA+ codes)"
        lu.flag_values = np.array([c for c, _ in classes], dtype=np.uint8)
        lu.flag_meanings = " ".join(n for _, n in classes)
        lu.cell_methods = "year_time: mode"
        lu.coordinates = "year_time lat lon"
        unc = ds.createVariable("landuse_uncertainty", "f4", ("year_time", "lat", "lon"), zlib=True, complevel=1)
        unc.long_name = "land-use predictive uncertainty: class-probability entropy / log(7)"
        unc.units = "1"
        unc.valid_range = np.array([0.0, 1.0], dtype=np.float32)
        unc.cell_methods = "year_time: mean"
        unc.coordinates = "year_time lat lon"
        lai = ds.createVariable("lai", "f4", ("time", "lat", "lon"), zlib=True, complevel=1)
        lai.standard_name, lai.units, lai.long_name = "leaf_area_index", "1", "leaf area index (m2 m-2)"
        lai.cell_methods = "time: mean"
        lai.coordinates = "time lat lon"

    def _days(self, date) -> float:
        return cftime.date2num(date, TIME_UNITS, calendar=self.calendar)

    def _append(self, dim: str, date, values: dict[str, np.ndarray], bounds=None) -> None:
        n = self.ds.dimensions[dim].size
        self.ds[dim][n] = self._days(date)
        if bounds is not None:
            self.ds[f"{dim}_bnds"][n] = [self._days(b) for b in bounds]
        for var, v in values.items():
            self.ds[var][n] = v
        self.ds.sync()

    def write_landuse(self, date, fine_map: np.ndarray, uncertainty: np.ndarray) -> None:
        year = [cftime.datetime(date.year + k, 1, 1, calendar=self.calendar) for k in (0, 1)]
        self._append("year_time", date, {"lulc": fine_map, "landuse_uncertainty": uncertainty}, bounds=year)

    def write_lai(self, date, lai: np.ndarray) -> None:
        self._append("time", date, {"lai": lai})

    def close(self) -> None:
        if self.ds.isopen():
            self.ds.close()


def join_history(output_dir: str | Path) -> Path:
    """The slab files of ``output_dir`` (``history_files = 'per_slab'``) joined into the one history
    file there, record by record and slab by slab (a record of one slab in memory at a time); the
    slab files are kept. ValueError when they are not every slab of one run."""
    import netCDF4

    folder = Path(output_dir)
    paths = sorted(folder.glob("ai4land_fine_history_slab*.nc"))
    if not paths:
        raise FileNotFoundError(f"{folder}: no ai4land_fine_history_slab*.nc to join")
    parts = [netCDF4.Dataset(p) for p in paths]
    try:
        slabs = sorted(((int(ds.ai4land_slab), *(int(r) for r in ds.ai4land_rows), ds) for ds in parts),
                       key=lambda s: s[0])
        first = slabs[0][3]
        nlat = int(first.ai4land_grid_rows)
        records = {dim: first.dimensions[dim].size for dim in FIELDS}
        problems = []  # a slab without rows writes no file: the rows must tile the grid
        if [s[1] for s in slabs] != [0] + [s[2] for s in slabs[:-1]] or slabs[-1][2] != nlat:
            problems.append(f"rows {[(s[1], s[2]) for s in slabs]} do not tile the {nlat} rows")
        for _, _, _, ds in slabs:
            if {dim: ds.dimensions[dim].size for dim in FIELDS} != records or ds["time"].calendar != first["time"].calendar:
                problems.append(f"{Path(ds.filepath()).name} holds {({d: ds.dimensions[d].size for d in FIELDS})} "
                                f"records in {ds['time'].calendar}, against {records} in {first['time'].calendar}")
        if problems:
            raise ValueError(f"{folder}: the slab histories are not one run's: " + "; ".join(problems))
        lat_b, lon_b = first["lat_bnds"][:], first["lon_bnds"][:]
        dlat, dlon = float(lat_b[0, 1] - lat_b[0, 0]), float(lon_b[0, 1] - lon_b[0, 0])
        grid = LatLonGrid(nlat, lon_b.shape[0], float(lat_b[0, 0]), float(lon_b[0, 0]), dlat, dlon)
        lulc = first["lulc"]
        classes = list(zip(lulc.flag_values.tolist(), lulc.flag_meanings.split()))
        joined = FineHistory(folder, grid, first["time"].calendar, classes)
        try:
            out = joined.ds
            for dim, names in FIELDS.items():
                for n in range(records[dim]):
                    out[dim][n] = first[dim][n]
                    if f"{dim}_bnds" in out.variables:
                        out[f"{dim}_bnds"][n] = first[f"{dim}_bnds"][n]
                    for name in names:
                        for _, row0, row1, ds in slabs:
                            out[name][n, row0:row1] = ds[name][n]
                    out.sync()
        finally:
            joined.close()
        return joined.path
    finally:
        for ds in parts:
            ds.close()
