"""Regular lat-lon grids and the exact maps between nested ones.

A grid is global or regional, cell-centred, latitude south→north, longitude west→east.
Global cell index: ``g = j * nlon + i``. Nested grids share edges: a coarse cell holds a
``factor × factor`` block of fine cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
