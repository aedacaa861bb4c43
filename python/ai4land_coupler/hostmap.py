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

from pathlib import Path

import numpy as np

from .errors import ArgumentError, InputFileError
from .grids import LatLonGrid, area_weighted_block_mean, upsample_blocks


class HostMap:
    """The host's cells seen from the fine grid. ``shape`` is (nlat, nlon) for a lat-lon host, else None."""

    ncells: int
    shape: tuple[int, int] | None
    description: str

    def to_host(self, fine: np.ndarray) -> np.ndarray:
        """(levels, H, W) fine field → (levels, ncells) host field, float64."""
        raise NotImplementedError

    def to_fine(self, host: np.ndarray) -> np.ndarray:
        """(ncells,) host field → (H, W) fine field, float64; NaN where no host cell overlaps."""
        raise NotImplementedError


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

    def to_host(self, fine: np.ndarray) -> np.ndarray:
        fine = np.asarray(fine, dtype=np.float64)
        if self.refine > 1:
            host = upsample_blocks(fine, self.refine)
        else:
            host = area_weighted_block_mean(fine, self.fine, self.coarsen)
        return host.reshape(fine.shape[0], -1)

    def to_fine(self, host: np.ndarray) -> np.ndarray:
        field = np.asarray(host, dtype=np.float64).reshape(self.shape)
        if self.refine > 1:
            return area_weighted_block_mean(field, self.grid, self.refine)
        return upsample_blocks(field, self.coarsen)


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
        self.fine, self.ncells, self.row, self.col, self.weights = fine, n_b, row, col, weights
        self.coverage = np.bincount(row, weights=weights, minlength=n_b)
        if self.coverage.max(initial=0.0) > 1.0 + 1e-6:
            raise InputFileError(f"{path}: variable 'S' sums to {self.coverage.max():.6g} > 1 for a destination cell "
                                 f"(expected conservative weights normalised by destination area)")
        self.overlap = weights * area_b[row]
        self.description = f"{n_b} cells from the weights file {path.name}"

    def to_host(self, fine: np.ndarray) -> np.ndarray:
        flat = np.asarray(fine, dtype=np.float64).reshape(fine.shape[0], -1)
        covered = self.coverage > 0
        out = np.zeros((flat.shape[0], self.ncells))
        for level, values in enumerate(flat):
            total = np.bincount(self.row, weights=self.weights * values[self.col], minlength=self.ncells)
            out[level, covered] = total[covered] / self.coverage[covered]
        return out

    def to_fine(self, host: np.ndarray) -> np.ndarray:
        host = np.asarray(host, dtype=np.float64)
        total = np.bincount(self.col, weights=self.overlap * host[self.row], minlength=self.fine.ncells)
        weight = np.bincount(self.col, weights=self.overlap, minlength=self.fine.ncells)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(weight > 0, total / weight, np.nan).reshape(self.fine.shape)


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


