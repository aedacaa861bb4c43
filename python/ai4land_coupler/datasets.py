"""Readers for the world files: LUH2 states, HILDA+-style maps, static and bioclimatic fields, drivers, LAI.

The files, under the default names that :func:`ai4land_coupler.world.make_world` writes
(docs/data.md lists every variable with its units and valid range)::

    static.nc                 fine   land_mask, elevation, slope, soil_quality
    bioclim.nc                fine   WorldClim-style bio01, bio04, bio12, bio15
    luh2_states.nc            coarse the 12 LUH2 area fractions, yearly ("years since Y-01-01")
    lulc_maps.nc              fine   lulc or LULC_states (time, lat, lon): HILDA+ codes, 99 = no data
    drivers_climatology.nc    fine   tas, pr, rsds (month, lat, lon)
    drivers_anomaly.nc        coarse tas_anom, pr_anom, rsds_anom (time, lat, lon), monthly
    lai_monthly.nc            fine   lai (time, lat, lon), monthly

Files are accepted as the real products lay them out: latitude north→south or south→north,
coordinates named lat/latitude and lon/longitude, longitudes in -180..180 or 0..360. Arrays come
out south→north and west→east (the package convention); a global domain starts at -180.

Only a region is read, by netCDF slicing; a region across a file's longitude seam is read in two
pieces. The region is snapped outward to whole LUH2 cells, so the fine grid nests the coarse one
(:attr:`WorldData.region` holds the snapped box); without a region it is the static file's domain.

Crosswalk (LUH2 → groups, see :data:`LUH2_CROSSWALK`): the scenario fractions are area fractions of
the whole coarse cell; over a cell they sum to the area share of its land that is not inland water.
Every check that fails raises :class:`InputFileError` naming the file and the variable.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cells import group_shares as cell_group_shares
from .errors import InputFileError
from .grids import ON_LINE, LatLonGrid, Region, upsample_blocks

log = logging.getLogger("ai4land.datasets")

LANDUSE_CLASSES = (
    (0, "ocean"), (11, "urban"), (22, "cropland"), (33, "pasture_rangeland"),
    (44, "forest"), (55, "grass_shrubland"), (66, "sparse_vegetation"), (77, "water"),
)
CLASS_CODES = np.array([code for code, _ in LANDUSE_CLASSES], dtype=np.uint8)
OCEAN, URBAN, CROPLAND, PASTURE, FOREST, GRASS, SPARSE, WATER = (int(c) for c in CLASS_CODES)
CLASS_INDEX = np.full(256, -1, dtype=np.int64)  # class code → level in LANDUSE_CLASSES
CLASS_INDEX[CLASS_CODES] = np.arange(CLASS_CODES.size)
NODATA = 99  # HILDA+ "no data" (cloud gaps in observed maps); never predicted, so not a class

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
GROUP_COLUMN = np.array([GROUP_OF_CLASS.get(int(code), -1) for code in CLASS_CODES], dtype=np.int64)  # class level → group

BIOCLIM_NAMES = ("bio01", "bio04", "bio12", "bio15")
STATIC_NAMES = ("elevation", "slope", "soil_quality") + BIOCLIM_NAMES
DRIVER_NAMES = ("tas", "pr", "rsds")
LULC_NAMES = ("lulc", "LULC_states")  # ours, and the real HILDA+ v2 name

FILE_NAMES = {
    "static": "static.nc",
    "bioclim": "bioclim.nc",
    "luh2_states": "luh2_states.nc",
    "lulc_maps": "lulc_maps.nc",
    "drivers_climatology": "drivers_climatology.nc",
    "drivers_anomaly": "drivers_anomaly.nc",
    "lai_monthly": "lai_monthly.nc",
}
REQUIRED_FILES = ("static", "bioclim", "luh2_states", "lulc_maps")  # the others are read only when asked for
FILE_VARIABLES = {
    "static": ("land_mask", "elevation", "slope", "soil_quality"),
    "bioclim": BIOCLIM_NAMES,
    "luh2_states": LUH2_STATES,
    "lulc_maps": LULC_NAMES,
    "drivers_climatology": DRIVER_NAMES,
    "drivers_anomaly": tuple(f"{n}_anom" for n in DRIVER_NAMES),
    "lai_monthly": ("lai",),
}
COARSE_FILES = ("luh2_states", "drivers_anomaly")  # on the LUH2 grid; the others on the fine grid
#: Time steps read at once (and held) from the LUH2 states and the driver anomalies: a read costs
#: the same for one step or a block, and these coarse fields are small beside the fine ones.
SCENARIO_BLOCK, ANOMALY_BLOCK = 8, 12

DEG_C = ("degC", "Celsius", "degrees_Celsius", "°C")
STATIC_UNITS = {"elevation": ("m",), "slope": ("degree", "degrees"), "soil_quality": ("1",),
                "bio01": DEG_C, "bio04": DEG_C, "bio12": ("mm",), "bio15": ("percent", "%")}
STATIC_RANGES = {"elevation": (-500.0, 9000.0), "slope": (0.0, 90.0), "soil_quality": (0.0, 1.0),
                 "bio01": (-90.0, 60.0), "bio04": (0.0, 5000.0), "bio12": (0.0, 30000.0), "bio15": (0.0, 400.0)}
DRIVER_UNITS = {"tas": ("K",), "pr": ("kg m-2 s-1",), "rsds": ("W m-2",)}
DRIVER_RANGES = {"tas": (150.0, 350.0), "pr": (0.0, 1e-2), "rsds": (0.0, 600.0)}
LAI_UNITS = ("m2 m-2", "m2/m2", "m^2 m^-2")
LAT_NAMES, LON_NAMES = ("lat", "latitude"), ("lon", "longitude")
LAT_UNITS = ("degrees_north", "degree_north", "degrees_N", "degree_N")
LON_UNITS = ("degrees_east", "degree_east", "degrees_E", "degree_E")
LATLON, TIME_LATLON, MONTH_LATLON = ("lat", "lon"), ("time", "lat", "lon"), ("month", "lat", "lon")


def fill_nodata(lulc: np.ndarray, factor: int) -> np.ndarray:
    """The map with its no-data (99) pixels given the most common land class of their coarse cell
    (grass/shrubland where the cell has none): a prior for a first year whose map has gaps."""
    out = np.array(lulc, dtype=np.uint8, copy=True)
    gaps = out == NODATA
    if not gaps.any():
        return out
    h, w = out.shape
    levels = np.stack([out == code for code in CLASS_CODES[1:]])  # land classes
    counts = levels.reshape(len(levels), h // factor, factor, w // factor, factor).sum(axis=(2, 4))
    majority = np.where(counts.max(axis=0) > 0, CLASS_CODES[1:][np.argmax(counts, axis=0)], GRASS)
    out[gaps] = upsample_blocks(majority, factor)[gaps]
    return out


def group_shares(class_fractions: np.ndarray, factor: int, weights: np.ndarray) -> np.ndarray:
    """Area fraction of each scenario group per coarse cell, as LUH2 states are: (5, H/factor, W/factor)
    float64, from class fractions (8, H, W) in :data:`LANDUSE_CLASSES` order (a one-hot map or
    probabilities). ``weights``: the fine cells' areas (e.g. ``grid.cell_area_weights()``). Ocean and
    inland water count in no group.
    """
    fractions = np.ascontiguousarray(class_fractions)
    if fractions.ndim != 3 or fractions.shape[0] != len(LANDUSE_CLASSES) or np.shape(weights) != fractions.shape[1:]:
        raise ValueError(f"class fractions {fractions.shape} and weights {np.shape(weights)} do not match "
                         f"({len(LANDUSE_CLASSES)}, H, W) and (H, W)")
    if fractions.shape[1] % factor or fractions.shape[2] % factor:
        raise ValueError(f"{fractions.shape[1:]} fine cells do not tile coarse cells of {factor}x{factor}")
    return cell_group_shares(fractions, np.ascontiguousarray(weights, dtype=np.float64), factor, GROUP_COLUMN, len(SCENARIO_GROUPS))


def group_fractions(lulc: np.ndarray, factor: int, weights: np.ndarray) -> np.ndarray:
    """:func:`group_shares` of a class map (no-data pixels count in no group)."""
    onehot = CLASS_INDEX[lulc][None] == np.arange(len(LANDUSE_CLASSES))[:, None, None]
    return group_shares(onehot, factor, weights)


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


def _quoted(names) -> str:
    return ", ".join(f"'{n}'" for n in names)


class _File:
    """An open netCDF file: checked variables, its grid (south→north), and reads through one window."""

    def __init__(self, path: Path, expected: tuple[str, ...]):
        import netCDF4

        self.path = Path(path)
        if not self.path.is_file():
            raise InputFileError(f"{self.path}: file not found (it should hold variables {_quoted(expected)})")
        try:
            self.ds = netCDF4.Dataset(self.path, "r")
        except OSError as exc:
            raise InputFileError(f"{self.path}: not a readable netCDF file, or truncated ({exc}); "
                                 f"it should hold variables {_quoted(expected)}") from exc
        try:
            self.lat_name, lat_dim = self._coordinate(LAT_NAMES, LAT_UNITS)
            self.lon_name, lon_dim = self._coordinate(LON_NAMES, LON_UNITS)
            self.dims = {"lat": lat_dim, "lon": lon_dim}
            self.grid, self.north_first = self._native_grid()
        except Exception:
            self.close()
            raise
        self.window = None

    def close(self) -> None:
        self.ds.close()

    def _coordinate(self, names, units) -> tuple[str, str]:
        """Name and dimension of the first coordinate variable found among ``names``."""
        for name in names:
            if name in self.ds.variables:
                v = self.ds.variables[name]
                if v.ndim != 1:
                    raise InputFileError(f"{self.path}: variable '{name}' has dimensions {v.dimensions}, expected one")
                if getattr(v, "units", None) not in units:
                    raise InputFileError(f"{self.path}: variable '{name}' has units {getattr(v, 'units', None)!r}, "
                                         f"expected {units[0]!r}")
                return name, v.dimensions[0]
        raise InputFileError(f"{self.path}: variable {' or '.join(map(repr, names))} is missing")

    def _axis(self, name: str, full_turn: float) -> tuple[np.ndarray, float]:
        """Centres of a regular axis and its signed spacing (made exact on a whole circle or half)."""
        v = self.ds.variables[name]
        values = np.asarray(self._get(name, v, slice(None)), dtype=float)
        if values.size > 1:
            step = (values[-1] - values[0]) / (values.size - 1)
        elif getattr(v, "bounds", None) in self.ds.variables:
            step = float(np.ptp(np.asarray(self.ds.variables[v.bounds][:], float)))
        else:
            raise InputFileError(f"{self.path}: variable '{name}' has one value and no bounds: the cell size is unknown")
        if step == 0 or np.abs(values - values[0] - step * np.arange(values.size)).max() > ON_LINE * abs(step):
            raise InputFileError(f"{self.path}: variable '{name}' is not a regular, monotonic axis")
        if abs(values.size * abs(step) - full_turn) <= ON_LINE * abs(step):
            step = np.sign(step) * full_turn / values.size
        return values, float(step)

    def _native_grid(self) -> tuple[LatLonGrid, bool]:
        lat, dlat = self._axis(self.lat_name, 180.0)
        lon, dlon = self._axis(self.lon_name, 360.0)
        if dlon < 0:
            raise InputFileError(f"{self.path}: variable '{self.lon_name}' must increase (west to east)")
        south = min(lat[0], lat[-1]) - abs(dlat) / 2
        if south < -90 - ON_LINE * abs(dlat) or south + lat.size * abs(dlat) > 90 + ON_LINE * abs(dlat):
            raise InputFileError(f"{self.path}: variable '{self.lat_name}' has cells beyond the poles")
        west = lon[0] - dlon / 2
        if lon.size * dlon > 360 + ON_LINE * dlon or not -180 - ON_LINE * dlon <= west < 360:
            raise InputFileError(f"{self.path}: variable '{self.lon_name}' must span at most 360 degrees, "
                                 f"starting in -180..360")
        south = max(south, -90.0)
        return LatLonGrid(lat.size, lon.size, south, west, abs(dlat), dlon), dlat < 0

    def crop(self, region: Region) -> LatLonGrid:
        """Read only ``region`` (on this file's cell edges) from now on; returns the regional grid."""
        try:
            self.window = self.grid.window(region)
        except ValueError as exc:
            raise InputFileError(f"{self.path}: variables '{self.lat_name}'/'{self.lon_name}': {exc}") from None
        return self.window.grid

    def var(self, name: str, dims: tuple[str, ...], units: tuple[str, ...] | None = None):
        """The variable ``name``, checked: dimensions (``lat``/``lon`` stand for the file's own names) and units."""
        if name not in self.ds.variables:
            raise InputFileError(f"{self.path}: variable '{name}' is missing")
        v = self.ds.variables[name]
        expected = tuple(self.dims.get(d, d) for d in dims)
        if tuple(v.dimensions) != expected:
            raise InputFileError(f"{self.path}: variable '{name}' has dimensions {v.dimensions}, expected {expected}")
        if units is not None and getattr(v, "units", None) not in units:
            raise InputFileError(f"{self.path}: variable '{name}' has units {getattr(v, 'units', None)!r}, expected {units[0]!r}")
        return v

    def _get(self, name: str, v, key):
        try:
            return v[key]
        except (OSError, RuntimeError) as exc:
            raise InputFileError(f"{self.path}: variable '{name}' cannot be read, the file may be truncated "
                                 f"or corrupt ({exc})") from exc

    def take(self, name: str, dims: tuple[str, ...], index=slice(None), units=None) -> np.ma.MaskedArray:
        """The window of variable ``name`` (at ``index`` of its leading dimension, if any), south→north."""
        v = self.var(name, dims, units)
        rows = self.window.rows
        if self.north_first:
            rows = slice(self.grid.nlat - rows.stop, self.grid.nlat - rows.start)
        lead = (index,) * (len(dims) - 2)
        data = np.ma.concatenate([np.ma.asarray(self._get(name, v, lead + (rows, cols))) for cols in self.window.columns],
                                 axis=-1)
        return data[..., ::-1, :] if self.north_first else data

    def read(self, name: str, dims, units=None, index=slice(None), valid=None, fill=None, land=None) -> np.ndarray:
        """Values as float32. Missing points (fill value or NaN) become ``fill``; they are an error when
        ``fill`` is None, or when they lie on ``land`` (a mask) if that is given."""
        raw = self.take(name, dims, index, units)
        data = np.ma.getdata(raw).astype(np.float32)
        missing = np.ma.getmaskarray(raw) | np.isnan(data)
        if missing.any():
            if fill is None or (land is not None and (missing & land).any()):
                where = " on land" if fill is not None else ""
                raise InputFileError(f"{self.path}: variable '{name}' has missing values{where}")
            data[missing] = fill
        if not np.all(np.isfinite(data)):
            raise InputFileError(f"{self.path}: variable '{name}' has non-finite values")
        if valid is not None and data.size and (data.min() < valid[0] or data.max() > valid[1]):
            raise InputFileError(f"{self.path}: variable '{name}' has values in [{data.min():.4g}, {data.max():.4g}], "
                                 f"outside the valid range [{valid[0]}, {valid[1]}]")
        return data

    def years(self) -> list[int]:
        """The year of each step of 'time': units 'years since YYYY-01-01', or any CF time units."""
        var = self.var("time", ("time",))
        values = np.asarray(self._get("time", var, slice(None)), dtype=float)
        m = re.fullmatch(r"\s*(?:common_)?years since\s+(-?\d+)-0?1-0?1(?:[ T].*)?", getattr(var, "units", ""))
        if m:
            if np.any(values != np.round(values)):
                raise InputFileError(f"{self.path}: variable 'time' must hold whole years")
            years = [int(m.group(1)) + int(v) for v in values]
        else:
            years = [y for y, _ in self.year_months()]
        if len(set(years)) != len(years):
            raise InputFileError(f"{self.path}: variable 'time' holds a year twice")
        return years

    def year_months(self) -> list[tuple[int, int]]:
        import cftime

        var = self.var("time", ("time",))
        values = np.asarray(self._get("time", var, slice(None)))
        try:
            dates = cftime.num2date(values, getattr(var, "units", ""), calendar=getattr(var, "calendar", "standard"))
        except Exception as exc:  # cftime raises several types for bad units/calendars
            raise InputFileError(f"{self.path}: variable 'time' cannot be decoded: {exc}") from exc
        return [(d.year, d.month) for d in np.atleast_1d(dates)]


def _required(paths: dict[str, Path], key: str) -> Path:
    if key not in paths:
        raise InputFileError(f"world file '{FILE_NAMES[key]}' is needed but was not given: name it in the namelist "
                             f"or put it in input_dir (it should hold variables {_quoted(FILE_VARIABLES[key])})")
    return Path(paths[key])


@dataclass(frozen=True)
class Domain:
    """The region the plugin covers (snapped to whole LUH2 cells), its LUH2 and fine grids, and how
    many fine cells a LUH2 cell holds along each side."""

    region: Region
    coarse_grid: LatLonGrid
    fine_grid: LatLonGrid
    factor: int

    def rows_region(self, first: int, end: int) -> Region:
        """The part of the region made of the fine rows [first, end), whole LUH2 rows."""
        g = self.fine_grid
        if not (0 <= first < end <= g.nlat) or first % self.factor or end % self.factor:
            raise ValueError(f"rows [{first}, {end}) are not whole LUH2 rows of {self.factor} fine rows in 0..{g.nlat}")
        return Region(g.lat0 + first * g.dlat, g.lat0 + end * g.dlat, self.region.lon_min, self.region.lon_max)


class WorldData:
    """The world files (paths by key of :data:`FILE_NAMES`), opened once, checked, read over one region.

    The files in :data:`REQUIRED_FILES` are opened and checked at once; the others when their data
    is asked for (a file not given raises :class:`InputFileError` then).
    """

    def __init__(self, files: dict[str, Path], region: Region | None = None, rows: tuple[int, int] | None = None):
        unknown = set(files) - set(FILE_NAMES)
        if unknown:
            raise ValueError(f"unknown world files {sorted(unknown)}; known: {sorted(FILE_NAMES)}")
        self.paths = {k: Path(v) for k, v in files.items()}
        self._files: dict[str, _File] = {}
        self._scenario_cache: dict[int, tuple] = {}  # year → ((5, Hc, Wc) float32, largest sum of the groups)
        self._anomaly_cache: dict[int, np.ndarray] = {}  # time step → (3, Hc, Wc) float32
        self._climatology: np.ndarray | None = None
        self._months: dict[str, list[tuple[int, int]]] = {}
        try:
            self._open(region, rows)
        except Exception:
            self.close()
            raise

    @staticmethod
    def _domain(static: "_File", luh: "_File", requested: Region | None) -> Domain:
        if requested is None:
            whole = static.grid.region
            requested = Region(whole.lat_min, whole.lat_max, -180.0, 180.0) if static.grid.is_global else whole
        try:
            region = luh.grid.snap(requested)
        except ValueError as exc:
            raise InputFileError(f"{luh.path}: variables '{luh.lat_name}'/'{luh.lon_name}': {exc}") from None
        snapped = "" if region == requested else f" ({requested} snapped outward to whole LUH2 cells)"
        log.info("domain %s%s", region, snapped)
        coarse_grid, fine_grid = luh.crop(region), static.crop(region)
        try:
            factor = coarse_grid.refinement_factor(fine_grid)
        except ValueError as exc:
            raise InputFileError(f"{luh.path}: variables '{luh.lat_name}'/'{luh.lon_name}': the LUH2 grid does not "
                                 f"nest the grid of {static.path}: {exc}") from exc
        return Domain(region, coarse_grid, fine_grid, factor)

    @classmethod
    def open_domain(cls, files: dict[str, Path], region: Region | None = None) -> Domain:
        """The :class:`Domain` of the world files, reading only the coordinates of the static and LUH2 files."""
        static = luh = None
        try:
            static = _File(_required(files, "static"), FILE_VARIABLES["static"])
            luh = _File(_required(files, "luh2_states"), FILE_VARIABLES["luh2_states"])
            return cls._domain(static, luh, region)
        finally:
            for f in (static, luh):
                if f is not None:
                    f.close()

    def _open(self, requested: Region | None, rows: tuple[int, int] | None) -> None:
        static, luh = self._open_file("static"), self._open_file("luh2_states")
        self.domain = self._domain(static, luh, requested)
        self.region = self.domain.region if rows is None else self.domain.rows_region(*rows)
        self.coarse_grid, self.fine_grid = luh.crop(self.region), static.crop(self.region)
        self.factor = self.domain.factor

        self.land_mask = static.read("land_mask", LATLON, valid=(0, 1)) == 1
        self.static = {n: self._file("bioclim" if n in BIOCLIM_NAMES else "static").read(
            n, LATLON, STATIC_UNITS[n], valid=STATIC_RANGES[n], fill=0.0, land=self.land_mask) for n in STATIC_NAMES}

        for name in LUH2_STATES:
            luh.var(name, TIME_LATLON, ("1",))
        self.scenario_years = luh.years()

        maps = self._file("lulc_maps")
        self._lulc_name = next((n for n in LULC_NAMES if n in maps.ds.variables), None)
        if self._lulc_name is None:
            raise InputFileError(f"{maps.path}: variable {' or '.join(map(repr, LULC_NAMES))} is missing")
        lulc = maps.var(self._lulc_name, TIME_LATLON)
        if lulc.dtype.kind not in "iuf":
            raise InputFileError(f"{maps.path}: variable '{self._lulc_name}' must hold integer class codes, got {lulc.dtype}")
        self.years = maps.years()

    @classmethod
    def open(cls, directory: str | Path, region: Region | None = None) -> "WorldData":
        """The files under their default names in ``directory``."""
        directory = Path(directory)
        if not directory.is_dir():
            raise InputFileError(f"{directory}: world directory not found")
        files = {k: directory / n for k, n in FILE_NAMES.items() if (directory / n).exists()}
        for key in REQUIRED_FILES:
            if key not in files:
                raise InputFileError(f"{directory / FILE_NAMES[key]}: file not found "
                                     f"(it should hold variables {_quoted(FILE_VARIABLES[key])})")
        return cls(files, region)

    @classmethod
    def from_config(cls, config, rows: tuple[int, int] | None = None) -> "WorldData":
        """The files and region named by a namelist :class:`~ai4land_coupler.namelist.Config`; with
        ``rows`` = [first, end) fine rows of that region, only those rows."""
        return cls(config.world_files(), config.region, rows)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> "WorldData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sha256(self) -> dict[str, str]:
        return {p.name: sha256_file(p) for p in self.paths.values()}

    def _open_file(self, key: str) -> _File:
        self._files[key] = _File(_required(self.paths, key), FILE_VARIABLES[key])
        return self._files[key]

    def _file(self, key: str) -> _File:
        """The file ``key``, opened on first use, cropped to the region and checked to be on its grid."""
        if key not in self._files:
            f = self._open_file(key)
            expected = self.coarse_grid if key in COARSE_FILES else self.fine_grid
            grid = f.crop(self.region)
            if grid.shape != expected.shape or any(abs(getattr(grid, a) - getattr(expected, a)) > ON_LINE * expected.dlat
                                                   for a in ("lat0", "lon0", "dlat", "dlon")):
                raise InputFileError(f"{f.path}: variables '{f.lat_name}'/'{f.lon_name}' give a {grid.nlat}x{grid.nlon} "
                                     f"grid of {grid.dlat:g} degrees over the region, expected {expected.nlat}x{expected.nlon} "
                                     f"of {expected.dlat:g} degrees")
        return self._files[key]

    @staticmethod
    def _index(path: Path, keys: list, key, what: str) -> int:
        try:
            return keys.index(key)
        except ValueError:
            raise InputFileError(f"{path}: variable 'time' has no {what} {key}") from None

    def _time_steps(self, key: str, t: int, steps: int, reads: dict[str, dict]) -> dict[str, np.ndarray]:
        """The variables of file ``key`` (name → keyword arguments of ``_File.read``) at its time
        steps [t, t + steps) (fewer at the file's end), one read each: (steps, H, W) arrays. Where a
        check fails in the block, step t alone is read again, so that only a bad step fails."""
        f = self._file(key)
        end = min(t + steps, f.ds.dimensions[f.dims.get("time", "time")].size)
        try:
            return {n: f.read(n, TIME_LATLON, index=slice(t, end), **kw) for n, kw in reads.items()}
        except InputFileError:
            if end == t + 1:
                raise
        return {n: f.read(n, TIME_LATLON, index=slice(t, t + 1), **kw) for n, kw in reads.items()}

    def scenario_groups(self, year: int) -> np.ndarray:
        """LUH2 states of ``year`` summed through the crosswalk: (5, Hc, Wc) float32, ocean → 0.
        Read :data:`SCENARIO_BLOCK` years at a time."""
        if year not in self._scenario_cache:
            luh = self._file("luh2_states")
            t = self._index(luh.path, self.scenario_years, year, "year")
            states = self._time_steps("luh2_states", t, SCENARIO_BLOCK,
                                      dict.fromkeys(LUH2_STATES, {"valid": (0.0, 1.0), "fill": 0.0}))
            self._scenario_cache = {}
            for i in range(len(states[LUH2_STATES[0]])):
                groups = np.stack([sum(states[n][i].astype(np.float64) for n in LUH2_CROSSWALK[g]) for g in SCENARIO_GROUPS])
                self._scenario_cache[self.scenario_years[t + i]] = (groups.astype(np.float32), float(groups.sum(axis=0).max()))
        groups, most = self._scenario_cache[year]
        if most > 1.0 + 1e-4:
            raise InputFileError(f"{self.paths['luh2_states']}: variables {'+'.join(LUH2_STATES)} sum to "
                                 f"{most:.6f} > 1 in year {year}")
        return groups.copy()

    def scenario_groups_fine(self, year: int) -> np.ndarray:
        """:meth:`scenario_groups` upsampled block-constant to the fine grid: (5, H, W)."""
        return upsample_blocks(self.scenario_groups(year), self.factor)

    def aggregate(self, lulc: np.ndarray) -> np.ndarray:
        """Area fractions of the scenario groups per coarse cell (5, Hc, Wc) of a fine class map: the
        crosswalk aggregation, which for the true maps gives :meth:`scenario_groups`."""
        return group_fractions(lulc, self.factor, self.fine_grid.cell_area_weights())

    def lulc(self, year: int) -> np.ndarray:
        """The class map of ``year`` (H, W) uint8: codes of :data:`CLASS_CODES`, or :data:`NODATA`."""
        maps = self._file("lulc_maps")
        name = self._lulc_name
        t = self._index(maps.path, self.years, year, "year")
        data = maps.take(name, TIME_LATLON, t).filled(NODATA)
        if data.dtype.kind == "f" and not np.all(np.isfinite(data) & (data == np.round(data))):
            raise InputFileError(f"{maps.path}: variable '{name}' has non-integer class codes in year {year}")
        codes = data.astype(np.int64)
        bad = np.setdiff1d(np.unique(codes), np.append(CLASS_CODES, NODATA))
        if bad.size:
            raise InputFileError(f"{maps.path}: variable '{name}' has unknown codes {bad.tolist()} in year {year}; "
                                 f"known: {CLASS_CODES.tolist()} and {NODATA} (no data)")
        return codes.astype(np.uint8)

    def climatology(self) -> np.ndarray:
        """Monthly driver climatology (12, 3, H, W) float32, read once."""
        if self._climatology is None:
            clim = self._file("drivers_climatology")
            data = np.stack([clim.read(n, MONTH_LATLON, DRIVER_UNITS[n], valid=DRIVER_RANGES[n])
                             for n in DRIVER_NAMES], axis=1)
            if data.shape[0] != 12:
                raise InputFileError(f"{clim.path}: variable 'tas' has {data.shape[0]} months, expected 12")
            self._climatology = data
        return self._climatology

    def _monthly_index(self, key: str, year: int, month: int) -> int:
        f = self._file(key)
        if key not in self._months:
            self._months[key] = f.year_months()
        return self._index(f.path, self._months[key], (year, month), "(year, month)")

    def driver_months(self) -> list[tuple[int, int]]:
        """The (year, month) records of the driver anomaly file."""
        if "drivers_anomaly" not in self._months:
            self._months["drivers_anomaly"] = self._file("drivers_anomaly").year_months()
        return list(self._months["drivers_anomaly"])

    def drivers(self, year: int, month: int) -> np.ndarray:
        """Fine drivers (3, H, W): tas K, pr kg m-2 s-1, rsds W m-2 (climatology + coarse anomaly)."""
        clim = self.climatology()
        t = self._monthly_index("drivers_anomaly", year, month)
        if t not in self._anomaly_cache:
            steps = self._time_steps("drivers_anomaly", t, ANOMALY_BLOCK,
                                     {f"{n}_anom": {"units": DRIVER_UNITS[n]} for n in DRIVER_NAMES})
            self._anomaly_cache = {t + i: block for i, block in enumerate(np.stack(list(steps.values()), axis=1))}
        return combine_drivers(clim[month - 1], self._anomaly_cache[t], self.factor)

    def lai(self, year: int, month: int) -> np.ndarray:
        """Observed LAI (H, W) m2 m-2; missing values are allowed off land, where they read 0."""
        f = self._file("lai_monthly")
        t = self._monthly_index("lai_monthly", year, month)
        return f.read("lai", TIME_LATLON, LAI_UNITS, index=t, valid=(0.0, 15.0), fill=0.0, land=self.land_mask)
