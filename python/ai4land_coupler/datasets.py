"""Readers for the world files: LUH2 states, HILDA+-style maps, static fields, drivers, LAI.

One directory holds (names as written by :func:`ai4land_coupler.world.make_world`)::

    static.nc                 fine   land_mask, elevation, slope, soil_quality, tas_annual, pr_annual
    luh2_states.nc            coarse the 12 LUH2 area fractions, yearly ("years since Y-01-01")
    lulc_maps.nc              fine   lulc(time, lat, lon) HILDA+ codes, yearly
    drivers_climatology.nc    fine   tas, pr, rsds (month, lat, lon)
    drivers_anomaly.nc        coarse tas_anom, pr_anom, rsds_anom (time, lat, lon), monthly
    lai_monthly.nc            fine   lai(time, lat, lon), monthly

Crosswalk (LUH2 → groups, see :data:`LUH2_CROSSWALK`): the scenario fractions are fractions of
the whole coarse cell; over a cell they sum to the share of its fine cells that are land and
not inland water. Every check that fails raises :class:`InputFileError` naming file and variable.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import cftime
import netCDF4
import numpy as np

from .errors import InputFileError
from .grids import LatLonGrid, block_sum, upsample_blocks

LANDUSE_CLASSES = (
    (0, "ocean"), (11, "urban"), (22, "cropland"), (33, "pasture_rangeland"),
    (44, "forest"), (55, "grass_shrubland"), (66, "sparse_vegetation"), (77, "water"),
)
CLASS_CODES = np.array([code for code, _ in LANDUSE_CLASSES], dtype=np.uint8)
OCEAN, URBAN, CROPLAND, PASTURE, FOREST, GRASS, SPARSE, WATER = (int(c) for c in CLASS_CODES)
CLASS_INDEX = np.full(256, -1, dtype=np.int64)  # class code → level in LANDUSE_CLASSES
CLASS_INDEX[CLASS_CODES] = np.arange(CLASS_CODES.size)

SCENARIO_GROUPS = ("forest", "natural", "urban", "cropland", "pasture")
LUH2_STATES = ("primf", "primn", "secdf", "secdn", "urban", "c3ann", "c4ann", "c3per", "c4per", "c3nfx", "pastr", "range")
LUH2_CROSSWALK = {
    "forest": ("primf", "secdf"),
    "natural": ("primn", "secdn"),
    "urban": ("urban",),
    "cropland": ("c3ann", "c4ann", "c3per", "c4per", "c3nfx"),
    "pasture": ("pastr", "range"),
}
# Class code → scenario group index (ocean and inland water belong to no group).
GROUP_OF_CLASS = {FOREST: 0, GRASS: 1, SPARSE: 1, URBAN: 2, CROPLAND: 3, PASTURE: 4}

STATIC_NAMES = ("elevation", "slope", "soil_quality", "tas_annual", "pr_annual")
DRIVER_NAMES = ("tas", "pr", "rsds")

FILE_NAMES = {
    "static": "static.nc",
    "luh2_states": "luh2_states.nc",
    "lulc_maps": "lulc_maps.nc",
    "drivers_climatology": "drivers_climatology.nc",
    "drivers_anomaly": "drivers_anomaly.nc",
    "lai_monthly": "lai_monthly.nc",
}

STATIC_UNITS = {"elevation": ("m",), "slope": ("degree", "degrees"), "soil_quality": ("1",),
                "tas_annual": ("K",), "pr_annual": ("kg m-2 s-1",)}
STATIC_RANGES = {"elevation": (-500.0, 9000.0), "slope": (0.0, 90.0), "soil_quality": (0.0, 1.0),
                 "tas_annual": (150.0, 350.0), "pr_annual": (0.0, 1e-2)}
DRIVER_UNITS = {"tas": ("K",), "pr": ("kg m-2 s-1",), "rsds": ("W m-2",)}
DRIVER_RANGES = {"tas": (150.0, 350.0), "pr": (0.0, 1e-2), "rsds": (0.0, 600.0)}
LAI_UNITS = ("m2 m-2", "m2/m2", "m^2 m^-2")


def group_fractions(lulc: np.ndarray, factor: int) -> np.ndarray:
    """Pixel-count fraction of each scenario group per coarse cell: (5, H/factor, W/factor) float64."""
    onehot = np.stack([np.isin(lulc, [c for c, g in GROUP_OF_CLASS.items() if g == k]) for k in range(len(SCENARIO_GROUPS))])
    return block_sum(onehot.astype(np.float64), factor) / factor**2


def combine_drivers(climatology: np.ndarray, anomaly: np.ndarray, factor: int) -> np.ndarray:
    """Fine drivers (3, H, W) = fine monthly climatology + block-upsampled coarse anomaly.

    Precipitation and radiation are clipped at zero (the anomaly is coarse, the climatology fine).
    """
    out = climatology + upsample_blocks(anomaly, factor)
    out[1:] = np.maximum(out[1:], 0.0)
    return out.astype(np.float32)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _years_since(path: Path, var) -> list[int]:
    m = re.fullmatch(r"\s*(?:common_)?years since\s+(-?\d+)-0?1-0?1(?:[ T].*)?", getattr(var, "units", ""))
    if not m:
        raise InputFileError(f"{path}: variable 'time' must have units 'years since YYYY-01-01', got {getattr(var, 'units', None)!r}")
    values = np.asarray(var[:], dtype=float)
    if np.any(values != np.round(values)):
        raise InputFileError(f"{path}: variable 'time' must hold whole years")
    return [int(m.group(1)) + int(v) for v in values]


def _year_months(path: Path, var) -> list[tuple[int, int]]:
    try:
        dates = cftime.num2date(np.asarray(var[:]), var.units, calendar=getattr(var, "calendar", "standard"))
    except Exception as exc:  # cftime raises several types for bad units/calendars
        raise InputFileError(f"{path}: variable 'time' cannot be decoded: {exc}") from exc
    return [(d.year, d.month) for d in dates]


class _File:
    """An open netCDF file with checked access to its variables."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputFileError(f"{self.path}: file not found")
        try:
            self.ds = netCDF4.Dataset(self.path, "r")
        except OSError as exc:
            raise InputFileError(f"{self.path}: not a readable netCDF file ({exc})") from exc

    def var(self, name: str, dims: tuple[str, ...], units: tuple[str, ...] | None = None):
        if name not in self.ds.variables:
            raise InputFileError(f"{self.path}: variable '{name}' is missing")
        v = self.ds.variables[name]
        if tuple(v.dimensions) != dims:
            raise InputFileError(f"{self.path}: variable '{name}' has dimensions {v.dimensions}, expected {dims}")
        if units is not None and getattr(v, "units", None) not in units:
            raise InputFileError(f"{self.path}: variable '{name}' has units {getattr(v, 'units', None)!r}, expected {units[0]!r}")
        return v

    def read(self, name: str, dims, units=None, index=slice(None), valid=None, fill=None) -> np.ndarray:
        """Values as float32 (masked points → ``fill``; error if any remain and fill is None)."""
        raw = self.var(name, dims, units)[index]
        if np.ma.is_masked(raw):
            if fill is None:
                raise InputFileError(f"{self.path}: variable '{name}' has missing values")
            raw = raw.filled(fill)
        data = np.asarray(raw, dtype=np.float32)
        if not np.all(np.isfinite(data)):
            raise InputFileError(f"{self.path}: variable '{name}' has non-finite values")
        if valid is not None and (data.min() < valid[0] or data.max() > valid[1]):
            raise InputFileError(f"{self.path}: variable '{name}' has values in [{data.min():.4g}, {data.max():.4g}], "
                                 f"outside the valid range [{valid[0]}, {valid[1]}]")
        return data

    def grid(self) -> LatLonGrid:
        lat = np.asarray(self.var("lat", ("lat",), ("degrees_north",))[:], float)
        lon = np.asarray(self.var("lon", ("lon",), ("degrees_east",))[:], float)
        if lat.size > 1 and not np.all(np.diff(lat) > 0):
            raise InputFileError(f"{self.path}: variable 'lat' must increase (south to north)")
        grid = LatLonGrid.from_centres(lat, lon)
        if not (np.allclose(grid.lat, lat, atol=1e-6) and np.allclose(grid.lon, lon, atol=1e-6)):
            raise InputFileError(f"{self.path}: variables 'lat'/'lon' are not a regular grid")
        return grid


class WorldData:
    """The world files of one directory (or any set of them), opened once and checked.

    Files not given raise :class:`InputFileError` only when their data is asked for.
    """

    def __init__(self, files: dict[str, Path]):
        unknown = set(files) - set(FILE_NAMES)
        if unknown:
            raise ValueError(f"unknown world files {sorted(unknown)}; known: {sorted(FILE_NAMES)}")
        self.paths = {k: Path(v) for k, v in files.items()}
        self._files: dict[str, _File] = {}
        self._scenario_cache: dict[int, np.ndarray] = {}
        self._climatology: np.ndarray | None = None
        self._months: dict[str, list[tuple[int, int]]] = {}

        try:
            self._check_files()
        except Exception:
            self.close()
            raise

    def _check_files(self) -> None:
        static = self._file("static")
        self.fine_grid = static.grid()
        self.land_mask = static.read("land_mask", ("lat", "lon"), valid=(0, 1)) == 1
        self.static = {n: static.read(n, ("lat", "lon"), STATIC_UNITS[n], valid=STATIC_RANGES[n]) for n in STATIC_NAMES}

        luh = self._file("luh2_states")
        self.coarse_grid = luh.grid()
        try:
            self.factor = self.coarse_grid.refinement_factor(self.fine_grid)
        except ValueError as exc:
            raise InputFileError(f"{luh.path}: coarse grid does not nest the grid of {static.path}: {exc}") from exc
        for name in LUH2_STATES:
            luh.var(name, ("time", "lat", "lon"), ("1",))
        self.scenario_years = _years_since(luh.path, luh.var("time", ("time",)))

        maps = self._file("lulc_maps")
        self._check_grid(maps, self.fine_grid)
        lulc = maps.var("lulc", ("time", "lat", "lon"))
        if lulc.dtype.kind not in "iu":
            raise InputFileError(f"{maps.path}: variable 'lulc' must be an integer class code, got {lulc.dtype}")
        self.years = _years_since(maps.path, maps.var("time", ("time",)))

    @classmethod
    def open(cls, directory: str | Path) -> "WorldData":
        directory = Path(directory)
        if not directory.is_dir():
            raise InputFileError(f"{directory}: world directory not found")
        files = {k: directory / n for k, n in FILE_NAMES.items() if (directory / n).exists()}
        for required in ("static", "luh2_states", "lulc_maps"):
            if required not in files:
                raise InputFileError(f"{directory / FILE_NAMES[required]}: file not found")
        return cls(files)

    def close(self) -> None:
        for f in self._files.values():
            f.ds.close()
        self._files.clear()

    def __enter__(self) -> "WorldData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sha256(self) -> dict[str, str]:
        return {p.name: sha256_file(p) for p in self.paths.values()}

    def _file(self, key: str) -> _File:
        if key not in self._files:
            if key not in self.paths:
                raise InputFileError(f"world file '{FILE_NAMES[key]}' was not provided")
            self._files[key] = _File(self.paths[key])
        return self._files[key]

    def _check_grid(self, f: _File, expected: LatLonGrid) -> None:
        grid = f.grid()
        if grid.shape != expected.shape or abs(grid.lat0 - expected.lat0) > 1e-6 or abs(grid.lon0 - expected.lon0) > 1e-6:
            raise InputFileError(f"{f.path}: variables 'lat'/'lon' give a {grid.nlat}x{grid.nlon} grid, "
                                 f"expected {expected.nlat}x{expected.nlon}")

    @staticmethod
    def _index(path: Path, keys: list, key, what: str) -> int:
        try:
            return keys.index(key)
        except ValueError:
            raise InputFileError(f"{path}: variable 'time' has no {what} {key}") from None

    def scenario_groups(self, year: int) -> np.ndarray:
        """LUH2 states of ``year`` summed through the crosswalk: (5, Hc, Wc) float32, ocean → 0."""
        if year not in self._scenario_cache:
            luh = self._file("luh2_states")
            t = self._index(luh.path, self.scenario_years, year, "year")
            states = {n: luh.read(n, ("time", "lat", "lon"), index=t, valid=(0.0, 1.0), fill=0.0).astype(np.float64)
                      for n in LUH2_STATES}
            groups = np.stack([sum(states[n] for n in LUH2_CROSSWALK[g]) for g in SCENARIO_GROUPS])
            total = groups.sum(axis=0)
            if total.max() > 1.0 + 1e-4:
                raise InputFileError(f"{luh.path}: variables {'+'.join(LUH2_STATES)} sum to {total.max():.6f} > 1 in year {year}")
            if len(self._scenario_cache) >= 4:
                self._scenario_cache.pop(next(iter(self._scenario_cache)))
            self._scenario_cache[year] = groups.astype(np.float32)
        return self._scenario_cache[year]

    def scenario_groups_fine(self, year: int) -> np.ndarray:
        """:meth:`scenario_groups` upsampled block-constant to the fine grid: (5, H, W)."""
        return upsample_blocks(self.scenario_groups(year), self.factor)

    def lulc(self, year: int) -> np.ndarray:
        maps = self._file("lulc_maps")
        t = self._index(maps.path, self.years, year, "year")
        data = np.asarray(maps.var("lulc", ("time", "lat", "lon"))[t])
        bad = np.setdiff1d(np.unique(data), CLASS_CODES)
        if bad.size:
            raise InputFileError(f"{maps.path}: variable 'lulc' has codes {bad.tolist()} outside {CLASS_CODES.tolist()} in year {year}")
        return data.astype(np.uint8)

    def climatology(self) -> np.ndarray:
        """Monthly driver climatology (12, 3, H, W) float32, read once."""
        if self._climatology is None:
            clim = self._file("drivers_climatology")
            self._check_grid(clim, self.fine_grid)
            data = np.stack([clim.read(n, ("month", "lat", "lon"), DRIVER_UNITS[n], valid=DRIVER_RANGES[n])
                             for n in DRIVER_NAMES], axis=1)
            if data.shape[0] != 12:
                raise InputFileError(f"{clim.path}: variable 'tas' has {data.shape[0]} months, expected 12")
            self._climatology = data
        return self._climatology

    def _monthly_index(self, key: str, year: int, month: int) -> int:
        f = self._file(key)
        if key not in self._months:
            self._months[key] = _year_months(f.path, f.var("time", ("time",)))
        return self._index(f.path, self._months[key], (year, month), "(year, month)")

    def drivers(self, year: int, month: int) -> np.ndarray:
        """Fine drivers (3, H, W): tas K, pr kg m-2 s-1, rsds W m-2 (climatology + coarse anomaly)."""
        clim = self.climatology()
        anom_file = self._file("drivers_anomaly")
        t = self._monthly_index("drivers_anomaly", year, month)
        anom = np.stack([anom_file.read(f"{n}_anom", ("time", "lat", "lon"), DRIVER_UNITS[n], index=t) for n in DRIVER_NAMES])
        if anom.shape[1:] != self.coarse_grid.shape:
            raise InputFileError(f"{anom_file.path}: variable 'tas_anom' is {anom.shape[1:]}, expected the coarse grid {self.coarse_grid.shape}")
        return combine_drivers(clim[month - 1], anom, self.factor)

    def lai(self, year: int, month: int) -> np.ndarray:
        f = self._file("lai_monthly")
        t = self._monthly_index("lai_monthly", year, month)
        data = f.read("lai", ("time", "lat", "lon"), LAI_UNITS, index=t, valid=(0.0, 15.0))
        if data.shape != self.fine_grid.shape:
            raise InputFileError(f"{f.path}: variable 'lai' is {data.shape}, expected the fine grid {self.fine_grid.shape}")
        return data
