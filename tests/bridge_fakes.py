"""A fake Component with the real API and analytic fields, for testing the C/Fortran bridge alone.

The fields are closed-form functions of the global cell index and the date, so a test can check
exactly what a host received and wrote. With ``AI4LAND_FAKE_LOG`` set to a folder, every rank
writes a JSON record of the calls it saw (and, on finalize, a small netCDF file written with the
netCDF4 wheel, which exercises it inside a host linked to its own netCDF).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import f90nml
import numpy as np

from ai4land_coupler.errors import ArgumentError, CallOrderError, NamelistError
from ai4land_coupler.partition import Box, Points

CLASS_NAMES = ["ocean", "urban", "cropland", "pasture/rangeland", "forest", "grass/shrubland",
               "sparse/no vegetation", "water"]
DRIVERS = ("tas", "pr", "rsds")


def landuse_fractions(g: np.ndarray, year: int) -> np.ndarray:
    """(8, n) fractions summing to 1 for global indices g."""
    k = np.arange(len(CLASS_NAMES))[:, None]
    w = 1.0 + ((g[None, :] * 7 + k * 3 + year) % 5)
    return w / w.sum(axis=0)


def lai_values(g: np.ndarray, nlon: int, nlat: int, month: int, day: int) -> np.ndarray:
    """(1, n) non-negative LAI from latitude and date."""
    lat = -90.0 + (g // nlon + 0.5) * 180.0 / nlat
    return (3.0 * np.cos(np.radians(lat)) * (1.0 + 0.5 * np.cos(2 * np.pi * (month - 7) / 12)) + 0.01 * day)[None, :]


class FakeComponent:
    def __init__(self):
        self.state = "new"
        self.calls: list[list] = []
        self.fields: dict[str, np.ndarray] = {}
        self.puts: dict[str, np.ndarray] = {}
        self.year = None

    def _log(self, *entry):
        self.calls.append(list(entry))

    def init(self, comm, namelist_path):
        from mpi4py import MPI

        if self.state != "new":
            raise CallOrderError("init twice")
        if not Path(namelist_path).exists():
            raise NamelistError(f"{namelist_path}: no such namelist file")
        nml = f90nml.read(namelist_path)["ai4land_nml"]
        self.nlat, self.nlon = int(nml["host_nlat"]), int(nml["host_nlon"])
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        relation = {MPI.IDENT: "ident", MPI.CONGRUENT: "congruent"}.get(MPI.Comm.Compare(comm, MPI.COMM_WORLD), "other")
        self._log("init", str(namelist_path), self.size, relation)
        self.state = "init"

    def def_partition(self, partition):
        if self.state != "init":
            raise CallOrderError("def_partition out of order")
        if not isinstance(partition, (Box, Points)):
            raise ArgumentError(f"not a partition: {partition!r}")
        self.cells = partition.global_indices(self.nlat, self.nlon)
        if isinstance(partition, Box):
            self._log("box", partition.i_offset, partition.j_offset, partition.ni, partition.nj)
        else:
            self._log("points", partition.indices.tolist())
        self.state = "partitioned"

    def enddef(self):
        total = self.comm.allreduce(int(self.cells.size))
        if total != self.nlat * self.nlon:
            raise ArgumentError(f"partition covers {total} cells of {self.nlat * self.nlon}")
        self.state = "running"

    @property
    def local_size(self) -> int:
        return int(self.cells.size)

    def field_levels(self, name):
        if name == "landuse_fraction":
            return list(CLASS_NAMES)
        if name in ("lai",) + DRIVERS:
            return [name]
        raise ArgumentError(f"unknown field '{name}'")

    def _check(self, name, array):
        want = len(self.field_levels(name)) * self.local_size
        if array.ndim != 1 or array.size != want:
            raise ArgumentError(f"field '{name}': {array.size} values, expected {want}")

    def put(self, name, values):
        if self.state != "running":
            raise CallOrderError("put before enddef")
        if name not in DRIVERS:
            raise ArgumentError(f"cannot put '{name}'")
        self._check(name, values)
        if not np.all(np.isfinite(values)):
            raise ArgumentError(f"put('{name}'): NaN or Inf")
        self.puts[name] = np.array(values, dtype=np.float64)
        self._log("put", name, str(values.dtype), int(values.size), float(values.min()), float(values.max()),
                  bool(values.flags.writeable))

    def step(self, when):
        if self.state != "running":
            raise CallOrderError("step before enddef")
        year, month, day, second = when
        changed = set()
        if year != self.year:
            self.year = year
            self.fields["landuse_fraction"] = landuse_fractions(self.cells, year)
            changed.add("landuse_fraction")
        if day == 1:
            missing = [d for d in DRIVERS if d not in self.puts]
            if missing:
                raise ArgumentError(f"step on day 1 needs the drivers; missing {missing}")
            self.fields["lai"] = lai_values(self.cells, self.nlon, self.nlat, month, day)
            changed.add("lai")
        self.puts.clear()
        self._log("step", year, month, day, second, sorted(changed))
        return changed

    def get(self, name, out):
        if name not in self.fields:
            raise CallOrderError(f"get('{name}') before it was produced")
        self._check(name, out)
        out.reshape(len(self.field_levels(name)), self.local_size)[...] = self.fields[name]
        self._log("get", name, str(out.dtype))

    def finalize(self):
        self._log("finalize")
        self.state = "finalized"
        folder = os.environ.get("AI4LAND_FAKE_LOG")
        if folder:
            import netCDF4

            with netCDF4.Dataset(Path(folder) / f"wheel_rank{self.rank}.nc", "w") as ds:
                ds.createDimension("cell", self.local_size)
                ds.createVariable("cell", "i8", ("cell",))[:] = self.cells
            (Path(folder) / f"calls_rank{self.rank}.json").write_text(json.dumps(self.calls))


SITECUSTOMIZE = """\
# Written by the tests: make the embedded ai4land plugin use the fake component.
import sys
sys.path.insert(0, {tests!r})
from ai4land_coupler import bridge
import bridge_fakes
bridge.COMPONENT_FACTORY = bridge_fakes.FakeComponent
"""


def write_fake_shim(folder: Path) -> Path:
    """A folder to put on PYTHONPATH so the embedded plugin runs FakeComponent."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.format(tests=str(Path(__file__).resolve().parent)))
    return folder
