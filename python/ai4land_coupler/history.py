"""CF-netCDF history of the fine-grid emulator output, written by one rank.

Each record is synced to disk when written, so a crash loses at most the record in flight.
"""
from __future__ import annotations

from pathlib import Path

import cftime
import numpy as np

from .grids import LatLonGrid

TIME_UNITS = "days since 1850-01-01 00:00:00"


def add_latlon(ds, grid: LatLonGrid) -> None:
    """CF lat/lon coordinates with bounds on an open netCDF4 Dataset."""
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


class FineHistory:
    def __init__(self, output_dir: str, grid: LatLonGrid, calendar: str, classes):
        import netCDF4

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(output_dir) / "ai4land_fine_history.nc"
        self.calendar = calendar
        ds = self.ds = netCDF4.Dataset(self.path, "w")
        ds.Conventions = "CF-1.10"
        ds.title = "ai4land-coupler emulated land use and leaf area index on the emulator grid"
        ds.source = "ai4land_coupler U-Net emulators"
        add_latlon(ds, grid)
        for dim in ("year_time", "time"):
            ds.createDimension(dim, None)
            t = ds.createVariable(dim, "f8", (dim,))
            t.units, t.calendar, t.standard_name, t.axis = TIME_UNITS, calendar, "time", "T"
        lu = ds.createVariable("lulc", "u1", ("year_time", "lat", "lon"), zlib=True, complevel=1)
        lu.long_name = "land use / land cover class (HILDA+ codes)"
        lu.flag_values = np.array([c for c, _ in classes], dtype=np.uint8)
        lu.flag_meanings = " ".join(n for _, n in classes)
        lu.coordinates = "year_time lat lon"
        unc = ds.createVariable("landuse_uncertainty", "f4", ("year_time", "lat", "lon"), zlib=True, complevel=1)
        unc.long_name = "land-use predictive uncertainty: class-probability entropy / log(7)"
        unc.units = "1"
        unc.valid_range = np.array([0.0, 1.0], dtype=np.float32)
        unc.coordinates = "year_time lat lon"
        lai = ds.createVariable("lai", "f4", ("time", "lat", "lon"), zlib=True, complevel=1)
        lai.standard_name, lai.units, lai.long_name = "leaf_area_index", "1", "leaf area index (m2 m-2)"
        lai.cell_methods = "time: mean"

    def _append(self, dim: str, date: cftime.datetime, values: dict[str, np.ndarray]) -> None:
        n = self.ds.dimensions[dim].size
        self.ds[dim][n] = cftime.date2num(date, TIME_UNITS, calendar=self.calendar)
        for var, v in values.items():
            self.ds[var][n] = v
        self.ds.sync()

    def write_landuse(self, date, fine_map: np.ndarray, uncertainty: np.ndarray) -> None:
        self._append("year_time", date, {"lulc": fine_map, "landuse_uncertainty": uncertainty})

    def write_lai(self, date, lai: np.ndarray) -> None:
        self._append("time", date, {"lai": lai})

    def close(self) -> None:
        if self.ds.isopen():
            self.ds.close()
