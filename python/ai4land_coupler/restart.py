"""Exact restart: the component's state in one netCDF file, in global cell order.

The file holds what the next step needs and nothing that depends on the decomposition:

* the fine-grid state: last year's land-use map (``lulc``) and the last LAI (``lai``);
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
    fine_map = exchange.gather_rows(component.fine_map)
    fine_lai = exchange.gather_rows(component.fine_lai)
    fields = {}
    for name in sorted(component._fields):
        parts = comm.gather((component.local_cells, component._fields[name]))
        if parts is not None:
            full = np.zeros((parts[0][1].shape[0], component.host_map.ncells))
            for cells, values in parts:
                full[:, cells] = values
            fields[name] = full
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
                if fine_map is not None:
                    ds.createVariable("lulc", "u1", ("lat", "lon"), zlib=True, complevel=1)[:] = fine_map
                if fine_lai is not None:
                    ds.createVariable("lai", "f4", ("lat", "lon"), zlib=True, complevel=1)[:] = fine_lai
                for name, values in fields.items():
                    ds.createDimension(f"{name}_level", values.shape[0])
                    v = ds.createVariable(f"host_{name}", "f8", (f"{name}_level", "host_cell"), zlib=True, complevel=1)
                    v[:] = values
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    collective(comm, write_on_root)
    return path


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
            state = {"current_date": ds.current_date, "landuse_started": bool(ds.landuse_started),
                     "fine_map": None, "fine_lai": None, "fields": {}}
            if component.slab >= 0:
                if "lulc" in ds.variables:
                    state["fine_map"] = np.asarray(ds["lulc"][first:end], dtype=np.uint8)
                if "lai" in ds.variables:
                    state["fine_lai"] = np.asarray(ds["lai"][first:end], dtype=np.float32)
            for name in ds.variables:
                if name.startswith("host_"):
                    state["fields"][name[len("host_"):]] = np.asarray(ds[name][:])[:, component.local_cells]
            return state

    state = collective(component.comm, read_mine)
    component.restore(state)
