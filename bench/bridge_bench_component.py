"""A do-nothing component for timing the C/Fortran bridge alone (bench/bench_bridge.py).

Injected into the embedded plugin by a ``sitecustomize.py`` shim (see :data:`SITECUSTOMIZE`), like
the fakes of the tests. Its methods return at once, so a call from Fortran measures the bridge:
C entry point → cffi (GIL) → ``bridge`` dispatch → here → back.

Fields whose name starts with ``probe`` are inspected (never those of the timed loops, so the
timings hold the bridge only): for each put/get the component records the data address of the
numpy array it was handed, its flags and its first and last values; in get it writes
``±(1000 + k)`` (k = number of probe gets so far) into the first and last elements, which the
Fortran program checks in its own array. With ``AI4LAND_BENCH_LOG`` set, ``finalize`` writes
the records there as JSON.
"""
from __future__ import annotations

import json
import os

import numpy as np

LEVELS = ["bench"]


def array_facts(values: np.ndarray) -> dict:
    """What says whether ``values`` is a view of someone else's memory or a copy of it."""
    base = values.base
    return {
        "address": int(values.__array_interface__["data"][0]),
        "nbytes": int(values.nbytes),
        "dtype": str(values.dtype),
        "owndata": bool(values.flags.owndata),
        "writeable": bool(values.flags.writeable),
        "base_type": type(base).__name__,
        # The array and the buffer it was made from are one memory block (no copy in between).
        "shares_memory_with_base": bool(base is not None and np.shares_memory(values, np.asarray(base))),
    }


class BenchComponent:
    """The Component API with empty bodies; ``probe*`` fields record what put/get were handed."""

    def __init__(self):
        self.ncells = 0
        self.records: list[dict] = []
        self.probe_gets = 0

    def init(self, comm, namelist_path):
        self.rank = comm.Get_rank()

    def def_partition(self, partition):
        self.ncells = int(partition.size)

    def enddef(self):
        pass

    @property
    def local_size(self) -> int:
        return self.ncells

    def field_levels(self, name):
        return LEVELS

    def put(self, name, values):
        if name.startswith("probe"):
            self.records.append({"op": "put", "name": name, **array_facts(values),
                                 "first": float(values[0]), "last": float(values[-1])})

    def step(self, when):
        return ()

    def get(self, name, out):
        if name.startswith("probe"):
            self.probe_gets += 1
            out[0], out[-1] = 1000.0 + self.probe_gets, -(1000.0 + self.probe_gets)
            self.records.append({"op": "get", "name": name, **array_facts(out),
                                 "first": float(out[0]), "last": float(out[-1])})

    def write_restart(self, path):
        pass

    def read_restart(self, path):
        pass

    def finalize(self):
        path = os.environ.get("AI4LAND_BENCH_LOG")
        if path:
            with open(path, "w") as f:
                json.dump(self.records, f)


SITECUSTOMIZE = """\
# Written by bench/bench_bridge.py: make the embedded ai4land plugin use the bench component.
import sys
sys.path.insert(0, {bench!r})
from ai4land_coupler import bridge
import bridge_bench_component
bridge.COMPONENT_FACTORY = bridge_bench_component.BenchComponent
"""
