"""Regular lat-lon grids, regions, and the exact maps between nested grids.

A grid is global or regional, cell-centred, latitude south→north, longitude west→east.
Global cell index: ``g = j * nlon + i``. Nested grids share edges: a coarse cell holds a
``factor × factor`` block of fine cells. A :class:`Region` is a box in degrees; a grid snaps it
outward to its own cell edges (:meth:`LatLonGrid.snap`) and cuts it out (:meth:`LatLonGrid.window`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ON_LINE = 1e-3  # how far (in cells) a coordinate may sit from a grid line and still count as on it


@dataclass(frozen=True)
class Region:
    """A latitude-longitude box in degrees.

    Longitudes may be given in -180..180 or 0..360, and the box may cross the dateline
    (``lon_min > lon_max``, e.g. 170, -170); ``lon_min == lon_max`` is a whole circle starting there.
    It is stored with ``lon_min`` in [-180, 180) and ``lon_max = lon_min + span`` (so it may exceed
    180), less 360 where that would pass 360.
    """

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self):
        values = [float(v) for v in (self.lat_min, self.lat_max, self.lon_min, self.lon_max)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"region bounds must be finite numbers, got {values}")
        lat_min, lat_max, lon_min, lon_max = values
        if not -90.0 <= lat_min < lat_max <= 90.0:
            raise ValueError(f"region latitudes must satisfy -90 <= lat_min < lat_max <= 90, got {lat_min}, {lat_max}")
        if not (-180.0 <= lon_min <= 360.0 and -180.0 <= lon_max <= 360.0):
            raise ValueError(f"region longitudes must lie in -180..360, got {lon_min}, {lon_max}")
        span = lon_max - lon_min if lon_max > lon_min else lon_max - lon_min + 360.0
        if not 0.0 < span <= 360.0:
            raise ValueError(f"region longitudes {lon_min}, {lon_max} span {span} degrees; the span must be in (0, 360]")
        west = (lon_min + 180.0) % 360.0 - 180.0
        east = west + span if west + span <= 360.0 else west + span - 360.0
        for name, value in zip(("lat_min", "lat_max", "lon_min", "lon_max"), (lat_min, lat_max, west, east)):
            object.__setattr__(self, name, value)

    @classmethod
    def from_values(cls, values) -> "Region":
        """From 4 numbers: lat_min, lat_max, lon_min, lon_max (as a namelist gives them)."""
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if len(values) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"a region is 4 numbers lat_min, lat_max, lon_min, lon_max; got {values!r}")
        return cls(*values)

    @classmethod
    def parse(cls, text: str) -> "Region":
        """From ``"lat_min,lat_max,lon_min,lon_max"`` (as the command line gives it)."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise ValueError(f"a region is 'lat_min,lat_max,lon_min,lon_max' in degrees; got {text!r}") from None
        return cls.from_values(values)

    @property
    def lon_span(self) -> float:
        return self.lon_max - self.lon_min if self.lon_max > self.lon_min else self.lon_max - self.lon_min + 360.0

    def __str__(self) -> str:
        return ",".join(f"{v:.10g}" for v in (self.lat_min, self.lat_max, self.lon_min, self.lon_max))


def _box(lat_min: float, lat_max: float, west: float, span: float) -> Region:
    """The region from its western edge and longitude span (rounded to 1e-9 degree against float noise)."""
    west = (round(west, 9) + 180.0) % 360.0 - 180.0
    east = (west + round(span, 9) + 180.0) % 360.0 - 180.0  # == west for a whole circle
    return Region(round(lat_min, 9), round(lat_max, 9), west, east)


def _whole(x: float) -> int | None:
    """``x`` as an integer when it is within ON_LINE of one."""
    n = round(x)
    return n if abs(x - n) <= ON_LINE else None


@dataclass(frozen=True)
class Window:
    """The cells of a grid inside a region: the regional grid, its rows and its column pieces in the
    parent grid (two pieces when the region crosses the parent's longitude seam)."""

    grid: "LatLonGrid"
    rows: slice
    columns: tuple[slice, ...]

    def take(self, field: np.ndarray) -> np.ndarray:
        """The window of a parent-grid field (..., H, W)."""
        return np.concatenate([field[..., self.rows, c] for c in self.columns], axis=-1)


@dataclass(frozen=True)
class LatLonGrid:
    nlat: int
    nlon: int
    lat0: float = -90.0  # southern edge
    lon0: float = -180.0  # western edge
    dlat: float | None = None  # defaults to a global grid
    dlon: float | None = None

    def __post_init__(self):
        if self.nlat < 1 or self.nlon < 1:
            raise ValueError(f"grid must have positive extents, got {self.nlat}x{self.nlon}")
        if self.dlat is None:
            object.__setattr__(self, "dlat", 180.0 / self.nlat)
        if self.dlon is None:
            object.__setattr__(self, "dlon", 360.0 / self.nlon)

    @classmethod
    def global_grid(cls, resolution_deg: float) -> "LatLonGrid":
        nlat, nlon = round(180.0 / resolution_deg), round(360.0 / resolution_deg)
        if abs(nlat * resolution_deg - 180.0) > 1e-6 or abs(nlon * resolution_deg - 360.0) > 1e-6:
            raise ValueError(f"resolution {resolution_deg} deg does not divide the globe")
        return cls(nlat, nlon)

    @classmethod
    def from_centres(cls, lat: np.ndarray, lon: np.ndarray) -> "LatLonGrid":
        lat, lon = np.asarray(lat, float), np.asarray(lon, float)
        dlat = float(lat[1] - lat[0]) if lat.size > 1 else 180.0
        dlon = float(lon[1] - lon[0]) if lon.size > 1 else 360.0
        return cls(lat.size, lon.size, float(lat[0] - dlat / 2), float(lon[0] - dlon / 2), dlat, dlon)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)

    @property
    def ncells(self) -> int:
        return self.nlat * self.nlon

    @property
    def is_global(self) -> bool:
        return abs(self.nlon * self.dlon - 360.0) < 1e-6

    @property
    def lat(self) -> np.ndarray:
        return self.lat0 + self.dlat * (np.arange(self.nlat) + 0.5)

    @property
    def lon(self) -> np.ndarray:
        return self.lon0 + self.dlon * (np.arange(self.nlon) + 0.5)

    @property
    def lat_bounds(self) -> np.ndarray:
        edges = self.lat0 + self.dlat * np.arange(self.nlat + 1)
        return np.stack([edges[:-1], edges[1:]], axis=1)

    @property
    def lon_bounds(self) -> np.ndarray:
        edges = self.lon0 + self.dlon * np.arange(self.nlon + 1)
        return np.stack([edges[:-1], edges[1:]], axis=1)

    def rows(self, first: int, end: int) -> "LatLonGrid":
        """The grid of this grid's rows [first, end)."""
        if not 0 <= first < end <= self.nlat:
            raise ValueError(f"rows [{first}, {end}) are not in the {self.nlat} rows of the grid")
        return LatLonGrid(end - first, self.nlon, self.lat0 + self.dlat * first, self.lon0, self.dlat, self.dlon)

    @property
    def region(self) -> Region:
        """The box the grid covers."""
        return _box(self.lat0, self.lat0 + self.nlat * self.dlat, self.lon0, self.nlon * self.dlon)

    def _column_offset(self, lon: float) -> float:
        """Cells from the western edge eastward to longitude ``lon`` (modulo 360), in [-ON_LINE, 360/dlon - ON_LINE)."""
        slack = ON_LINE * self.dlon
        return (((lon - self.lon0 + slack) % 360.0) - slack) / self.dlon

    def snap(self, region: Region) -> Region:
        """The smallest box of whole cells of this grid that holds ``region``; ValueError if the grid does not cover it."""
        south = math.floor((region.lat_min - self.lat0) / self.dlat + ON_LINE)
        north = math.ceil((region.lat_max - self.lat0) / self.dlat - ON_LINE)
        offset = self._column_offset(region.lon_min)
        west = math.floor(offset + ON_LINE)
        east = math.ceil(offset + region.lon_span / self.dlon - ON_LINE)
        ncols = min(east - west, self.nlon) if self.is_global else east - west
        if south < 0 or north > self.nlat or (not self.is_global and east > self.nlon):
            raise ValueError(f"region {region} is not inside the grid's domain {self.region}")
        return _box(self.lat0 + south * self.dlat, self.lat0 + north * self.dlat, self.lon0 + west * self.dlon,
                    ncols * self.dlon)

    def window(self, region: Region) -> Window:
        """The cells of this grid in ``region``, whose edges must lie on this grid's lines (see :meth:`snap`)."""
        south = _whole((region.lat_min - self.lat0) / self.dlat)
        north = _whole((region.lat_max - self.lat0) / self.dlat)
        west = _whole(self._column_offset(region.lon_min))
        ncols = _whole(region.lon_span / self.dlon)
        if None in (south, north, west, ncols):
            raise ValueError(f"region {region} does not lie on the cell edges of the grid {self.region} "
                             f"({self.dlat:g} x {self.dlon:g} degrees)")
        if south < 0 or north > self.nlat or ncols > self.nlon or (not self.is_global and west + ncols > self.nlon):
            raise ValueError(f"region {region} is not inside the grid's domain {self.region}")
        east = west + ncols
        columns = (slice(west, east),) if east <= self.nlon else (slice(west, self.nlon), slice(0, east - self.nlon))
        grid = LatLonGrid(north - south, ncols, region.lat_min, region.lon_min, self.dlat, self.dlon)
        return Window(grid, slice(south, north), columns)

    def cell_area_weights(self) -> np.ndarray:
        """Cell areas on the unit sphere (nlat, nlon): dlon * (sin(lat_n) - sin(lat_s))."""
        b = np.deg2rad(self.lat_bounds)
        w = np.deg2rad(self.dlon) * (np.sin(b[:, 1]) - np.sin(b[:, 0]))
        return np.repeat(w[:, None], self.nlon, axis=1)

    def refinement_factor(self, fine: "LatLonGrid") -> int:
        """Integer k such that each cell of self holds k×k cells of ``fine``; error otherwise."""
        if fine.nlat % self.nlat or fine.nlon % self.nlon:
            raise ValueError(f"grid {fine.nlat}x{fine.nlon} is not an integer refinement of {self.nlat}x{self.nlon}")
        k = fine.nlat // self.nlat
        if fine.nlon // self.nlon != k:
            raise ValueError(f"grid {fine.nlat}x{fine.nlon} refines {self.nlat}x{self.nlon} unequally in lat and lon")
        if abs(fine.lat0 - self.lat0) > 1e-6 or abs(fine.lon0 - self.lon0) > 1e-6:
            raise ValueError("nested grids must share their south-west corner")
        return k


def upsample_blocks(coarse: np.ndarray, factor: int) -> np.ndarray:
    """Block-constant coarse→fine on the last two axes (each coarse value fills factor×factor)."""
    return np.repeat(np.repeat(coarse, factor, axis=-2), factor, axis=-1)


def block_sum(fine: np.ndarray, factor: int) -> np.ndarray:
    """Sum of each factor×factor block on the last two axes, in a fixed order."""
    *lead, h, w = fine.shape
    return fine.reshape(*lead, h // factor, factor, w // factor, factor).sum(axis=(-3, -1))


def area_weighted_block_mean(fine: np.ndarray, fine_grid: LatLonGrid, factor: int) -> np.ndarray:
    """Area-weighted mean of each factor×factor block (the exact conservative fine→coarse map)."""
    w = fine_grid.cell_area_weights()
    return block_sum(fine * w, factor) / block_sum(w, factor)
