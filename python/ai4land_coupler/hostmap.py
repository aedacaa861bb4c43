"""From the emulator's fine grid to the host's cells, and back (for the host's drivers).

Three kinds of host grid:

* a regular lat-lon grid over the same domain, **coarser** by an integer factor k (each host cell
  is the area-weighted mean of its k×k fine cells) or **finer** by an integer factor r (each host
  cell takes the value of the fine cell it lies in);
* any grid, unstructured included, through a **remapping-weights file** in the ESMF/SCRIP format
  (``row``, ``col``, ``S``, as written by ``ESMF_RegridWeightGen`` or CDO ``gencon``): the source
  grid is the emulator grid in its global cell order (longitude fastest, latitude south→north,
  1-based ``col``), the destination is the host's cells in its own order (1-based ``row``).
  Host values are ``Σ S·fine / Σ S`` per host cell, the conservative mean over the part of the
  cell that the emulator grid covers (``S`` normalised by destination area, ``norm_type =
  dstarea``; the division by ``Σ S`` makes ``fracarea`` and ``dstarea`` files agree).

``to_fine`` maps a host field back onto the fine grid (the host's drivers, downscaled by the delta
method): block copy or area mean for lat-lon hosts, and for a weights file the overlap-area
(``S · area_b``) weighted mean of the host cells that overlap each fine cell.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ArgumentError, InputFileError
from .grids import LatLonGrid


@dataclass(frozen=True)
class Entries:
    """The overlaps of host cells with the fine cells of the rows [first, end): entry n joins host cell
    ``cell[n]`` and the fine cell ``pixel[n]`` (flat index within those rows, longitude fastest)."""

    cell: np.ndarray  # int64
    pixel: np.ndarray  # int64
    up: np.ndarray  # weight of the fine value in its host cell's mean
    down: np.ndarray  # weight of the host value in its fine cell's mean


class HostMap:
    """The host's cells seen from the fine grid, as sparse :class:`Entries`. ``shape`` is (nlat, nlon)
    for a lat-lon host, else None. A host value is Σ up·fine / Σ up over its entries, a fine value
    Σ down·host / Σ down; the sums run in entry order, so any cut into bands of rows adds the same
    numbers."""

    ncells: int
    shape: tuple[int, int] | None
    description: str
    fine: LatLonGrid

    def entries(self, first: int, end: int) -> Entries:
        """The entries of the fine rows [first, end), in global fine-cell order."""
        raise NotImplementedError

    def to_host(self, fine: np.ndarray) -> np.ndarray:
        """(levels, H, W) fine field → (levels, ncells) host field, float64; 0 where no fine cell overlaps."""
        e = self.entries(0, self.fine.nlat)
        flat = np.asarray(fine, dtype=np.float64).reshape(fine.shape[0], -1)
        total = np.stack([np.bincount(e.cell, weights=e.up * level[e.pixel], minlength=self.ncells) for level in flat])
        weight = np.bincount(e.cell, weights=e.up, minlength=self.ncells)
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), 0.0)

    def to_fine(self, host: np.ndarray) -> np.ndarray:
        """(ncells,) host field → (H, W) fine field, float64; NaN where no host cell overlaps."""
        e = self.entries(0, self.fine.nlat)
        return fine_from_host(e, np.asarray(host, dtype=np.float64)[e.cell], self.fine.ncells).reshape(self.fine.shape)


def fine_from_host(e: Entries, host_of_entry: np.ndarray, npixels: int) -> np.ndarray:
    """Σ down·host / Σ down per fine cell (NaN where no entry), from the host value of each entry."""
    total = np.bincount(e.pixel, weights=e.down * host_of_entry, minlength=npixels)
    weight = np.bincount(e.pixel, weights=e.down, minlength=npixels)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / weight, np.nan)


class LatLonHostMap(HostMap):
    def __init__(self, fine: LatLonGrid, nlat: int, nlon: int):
        self.fine, self.shape, self.ncells = fine, (nlat, nlon), nlat * nlon
        self.grid = LatLonGrid(nlat, nlon, fine.lat0, fine.lon0, fine.dlat * fine.nlat / nlat, fine.dlon * fine.nlon / nlon)
        self.coarsen = self.refine = 1
        try:
            if nlat <= fine.nlat:
                self.coarsen = self.grid.refinement_factor(fine)
            else:
                self.refine = fine.refinement_factor(self.grid)
        except ValueError as exc:
            raise ArgumentError(f"host grid {nlat}x{nlon} is not an integer coarsening or refinement of the emulator "
                                f"grid {fine.nlat}x{fine.nlon}: {exc}") from None
        how = f"coarser by {self.coarsen}" if self.refine == 1 else f"finer by {self.refine}"
        self.description = f"lat-lon {nlat}x{nlon} ({how} than the emulator grid)"

    def entries(self, first: int, end: int) -> Entries:
        """Coarser: each fine cell in its host cell, weighted by its area. Finer: each fine cell to the
        r×r host cells inside it (their value), which give it their area-weighted mean."""
        nlon = self.shape[1]
        rows, cols = np.meshgrid(np.arange(first, end), np.arange(self.fine.nlon), indexing="ij")
        pixel = np.arange(rows.size)
        if self.refine == 1:
            c = self.coarsen
            cell = ((rows // c) * nlon + cols // c).ravel()
            return Entries(cell, pixel, self.fine.cell_area_weights()[first:end].ravel(), np.ones(pixel.size))
        r = self.refine
        sub_rows, sub_cols = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
        host_rows = rows.ravel()[:, None] * r + sub_rows.ravel()[None]
        cell = (host_rows * nlon + cols.ravel()[:, None] * r + sub_cols.ravel()[None]).ravel()
        area = self.grid.cell_area_weights()[:, 0][host_rows].ravel()
        return Entries(cell, np.repeat(pixel, r * r), np.ones(cell.size), area)


class WeightsHostMap(HostMap):
    """A host grid given by an ESMF/SCRIP remapping-weights file from the emulator grid."""

    shape = None

    def __init__(self, fine: LatLonGrid, path: str | Path):
        import netCDF4

        path = Path(path)
        try:
            ds = netCDF4.Dataset(path)
        except (OSError, FileNotFoundError) as exc:
            raise InputFileError(f"{path}: not a readable netCDF weights file ({exc})") from None
        with ds:
            for name in ("row", "col", "S"):
                if name not in ds.variables:
                    raise InputFileError(f"{path}: variable '{name}' is missing (an ESMF/SCRIP weights file has row, col, S)")
            for dim in ("n_a", "n_b"):
                if dim not in ds.dimensions:
                    raise InputFileError(f"{path}: dimension '{dim}' is missing (source and destination cell counts)")
            n_a, n_b = ds.dimensions["n_a"].size, ds.dimensions["n_b"].size
            row = np.asarray(ds["row"][:], dtype=np.int64) - 1
            col = np.asarray(ds["col"][:], dtype=np.int64) - 1
            weights = np.asarray(ds["S"][:], dtype=np.float64)
            area_b = np.asarray(ds["area_b"][:], dtype=np.float64) if "area_b" in ds.variables else np.ones(n_b)
        if n_a != fine.ncells:
            raise InputFileError(f"{path}: dimension 'n_a' = {n_a} source cells, but the emulator grid has "
                                 f"{fine.nlat}x{fine.nlon} = {fine.ncells}")
        if not (row.shape == col.shape == weights.shape):
            raise InputFileError(f"{path}: variables 'row', 'col' and 'S' differ in length")
        for name, index, n in (("row", row, n_b), ("col", col, n_a)):
            bad = index[(index < 0) | (index >= n)]
            if bad.size:
                raise InputFileError(f"{path}: variable '{name}' has {bad.size} indices outside 1..{n}, e.g. {(bad[:3] + 1).tolist()}")
        if not np.all(np.isfinite(weights)) or weights.min(initial=0.0) < 0.0:
            raise InputFileError(f"{path}: variable 'S' has negative or non-finite weights")
        coverage = np.bincount(row, weights=weights, minlength=n_b)
        if coverage.max(initial=0.0) > 1.0 + 1e-6:
            raise InputFileError(f"{path}: variable 'S' sums to {coverage.max():.6g} > 1 for a destination cell "
                                 f"(expected conservative weights normalised by destination area)")
        order = np.argsort(col, kind="stable")  # global fine-cell order; file order among equals
        self.fine, self.ncells = fine, n_b
        self.row, self.col, self.weights = row[order], col[order], weights[order]
        self.overlap = self.weights * area_b[self.row]
        self.description = f"{n_b} cells from the weights file {path.name}"

    def entries(self, first: int, end: int) -> Entries:
        lo, hi = np.searchsorted(self.col, [first * self.fine.nlon, end * self.fine.nlon])
        return Entries(self.row[lo:hi], self.col[lo:hi] - first * self.fine.nlon, self.weights[lo:hi], self.overlap[lo:hi])


def make_host_map(fine: LatLonGrid, nlat: int, nlon: int, weights_file: str = "") -> HostMap:
    """The host map a namelist asks for: a weights file if given, else a lat-lon grid of nlat×nlon."""
    return WeightsHostMap(fine, weights_file) if weights_file else LatLonHostMap(fine, nlat, nlon)


def write_weights_file(path: str | Path, fine: LatLonGrid, host_of_fine: np.ndarray, nhost: int) -> Path:
    """An ESMF-format conservative weights file for a host whose cells are unions of fine cells:
    ``host_of_fine`` (H, W) gives each fine cell's host cell (0-based), e.g. an unstructured mesh.
    Also writes the host cells' areas and centres (``area_b``, ``yc_b``, ``xc_b``), as ESMF does.
    For tests, examples and users who build such meshes."""
    import netCDF4

    area = fine.cell_area_weights().ravel()
    col = np.arange(fine.ncells)
    row = np.asarray(host_of_fine, dtype=np.int64).ravel()
    area_b = np.bincount(row, weights=area, minlength=nhost)
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "ai4land_coupler conservative weights: emulator grid -> host cells"
        ds.normalization, ds.map_method = "destarea", "Conservative remapping"
        for name, size in (("n_s", col.size), ("n_a", fine.ncells), ("n_b", nhost)):
            ds.createDimension(name, size)
        ds.createVariable("row", "i4", ("n_s",))[:] = row + 1
        ds.createVariable("col", "i4", ("n_s",))[:] = col + 1
        ds.createVariable("S", "f8", ("n_s",))[:] = area / area_b[row]
        ds.createVariable("area_a", "f8", ("n_a",))[:] = area
        ds.createVariable("area_b", "f8", ("n_b",))[:] = area_b
        lat, lon = np.meshgrid(np.deg2rad(fine.lat), np.deg2rad(fine.lon), indexing="ij")
        east, north = (np.bincount(row, weights=area * f(lon).ravel(), minlength=nhost) for f in (np.cos, np.sin))
        centre_lat = np.bincount(row, weights=area * np.rad2deg(lat).ravel(), minlength=nhost) / area_b
        for name, values, units in (("yc_b", centre_lat, "degrees_north"),
                                    ("xc_b", np.rad2deg(np.arctan2(north, east)), "degrees_east")):
            v = ds.createVariable(name, "f8", ("n_b",))
            v.units = units
            v[:] = values
    return Path(path)


