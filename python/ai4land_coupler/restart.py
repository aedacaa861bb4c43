"""Exact restart: the component's state in one netCDF file, in global cell order.

The file holds what the next step needs and nothing that depends on the decomposition:

* the fine-grid state: last year's land-use map (``lulc``) and the last LAI (``lai``), and with the
  daily cadence the emulated LAI of the months around the last step (``lai_YYYY_MM``);
* the host fields of the last steps (``host_<field>``, levels × host cells in the host's global order),
  so that ``get`` after a restart returns what it returned before;
* the clock (``current_date`` in the calendar, ``landuse_started``);
* the identity of the run: the emulators' weight hashes, the fine and host grids, the calendar —
  checked on reading, which refuses a mismatch — and the namelist text, for the record.

Writing is collective: the state is gathered to rank 0, which writes a temporary file beside the
target, syncs it to disk and renames it over the target, so a crash never leaves a half-written
restart under the final name. Reading is collective too: each rank reads its own rows and cells.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .comm import collective
from .errors import InputFileError

FORMAT = "ai4land-restart-1"


def _identity(component) -> dict[str, str]:
    """What must match between the run that wrote a restart and the one that reads it."""
    ids = component.comm.allgather(component.emulator_hashes() if component.slab >= 0 else None)
    hashes = next((i for i in ids if i is not None), {})
    grid, host = component.fine_grid, component.host_map
    identity = {f"{kind}_emulator_sha256": h for kind, h in sorted(hashes.items())}
    identity.update(fine_grid=f"{grid.nlat}x{grid.nlon} from {grid.lat0:g},{grid.lon0:g} by {grid.dlat:g},{grid.dlon:g}",
                    host_cells=str(host.ncells), calendar=component.config.calendar,
                    lai_cadence=f"{component.config.lai_cadence}/{component.config.lai_interval_days}")
    return identity


def write(component, path: str | Path) -> Path:
    """Write ``component``'s state to ``path`` atomically; collective over its communicator."""
    path = Path(path)
    comm, exchange = component.comm, component.exchange
    identity = _identity(component)
    fine = {"lulc": exchange.gather_rows(component.fine_map), "lai": exchange.gather_rows(component.fine_lai)}
    fields = {f"host_{name}": _gather_host(component, values) for name, values in sorted(component._fields.items())}
    for (year, month), (lai, month_fields) in sorted(component._lai_months.items()):  # daily cadence
        fine[f"lai_{year:04d}_{month:02d}"] = exchange.gather_rows(lai)
        fields.update({f"host_{name}_{year:04d}_{month:02d}": _gather_host(component, values)
                       for name, values in sorted(month_fields.items())})
    current = component.clock.current

    def write_on_root():
        if comm.rank != 0:
            return
        import netCDF4

        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with netCDF4.Dataset(tmp, "w") as ds:
                ds.format_version = FORMAT
                ds.title = "ai4land-coupler restart"
                for key, value in identity.items():
                    ds.setncattr(key, value)
                ds.namelist = Path(component.namelist_path).read_text()
                ds.current_date = "" if current is None else current.isoformat()
                ds.landuse_started = int(component._landuse_started)
                grid = component.fine_grid
                ds.createDimension("lat", grid.nlat)
                ds.createDimension("lon", grid.nlon)
                ds.createDimension("host_cell", component.host_map.ncells)
                for name, values in fine.items():
                    if values is not None:
                        kind = "u1" if name == "lulc" else "f4"
                        ds.createVariable(name, kind, ("lat", "lon"), zlib=True, complevel=1)[:] = values
                for name, values in fields.items():
                    ds.createDimension(f"{name}_level", values.shape[0])
                    ds.createVariable(name, "f8", (f"{name}_level", "host_cell"), zlib=True, complevel=1)[:] = values
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InputFileError(f"{path}: cannot write the restart ({exc.strerror or exc})") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    collective(comm, write_on_root)
    return path


def _gather_host(component, values: np.ndarray) -> np.ndarray | None:
    """A host field (levels, local cells) in global cell order on rank 0; None elsewhere."""
    parts = component.comm.gather((component.local_cells, values))
    if parts is None:
        return None
    full = np.zeros((values.shape[0], component.host_map.ncells))
    for cells, part in parts:
        full[:, cells] = part
    return full


def read(component, path: str | Path) -> None:
    """Restore ``component``'s state from ``path``; collective. Refuses a restart of another run."""
    path = Path(path)
    identity = _identity(component)

    def read_mine():
        import netCDF4

        try:
            ds = netCDF4.Dataset(path)
        except (OSError, FileNotFoundError) as exc:
            raise InputFileError(f"{path}: not a readable restart file ({exc})") from None
        with ds:
            if getattr(ds, "format_version", None) != FORMAT:
                raise InputFileError(f"{path}: not an ai4land restart (format_version "
                                     f"{getattr(ds, 'format_version', 'missing')!r}, expected {FORMAT!r})")
            for key, want in identity.items():
                have = getattr(ds, key, None)
                if have != want:
                    raise InputFileError(f"{path}: restart written with {key} = {have!r}, this run has {want!r}")
            first, end = component.rows
            rows = {name: np.asarray(ds[name][first:end]) if component.slab >= 0 else None
                    for name in ds.variables if ds[name].dimensions == ("lat", "lon")}
            host = {name[len("host_"):]: np.asarray(ds[name][:])[:, component.local_cells]
                    for name in ds.variables if name.startswith("host_")}
            months, month_fields = {}, set()
            for name in rows:
                if name.startswith("lai_"):
                    key = tuple(int(v) for v in name.split("_")[1:])
                    suffix = f"_{key[0]:04d}_{key[1]:02d}"
                    mine = {f for f in host if f.endswith(suffix)}
                    months[key] = (rows[name], {f[:-len(suffix)]: host[f] for f in mine})
                    month_fields |= mine
            return {"current_date": ds.current_date, "landuse_started": bool(ds.landuse_started),
                    "fine_map": rows.get("lulc"), "fine_lai": rows.get("lai"), "lai_months": months,
                    "fields": {f: v for f, v in host.items() if f not in month_fields}}

    state = collective(component.comm, read_mine)
    component.restore(state)
