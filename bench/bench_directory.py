"""(h) Where the host cells live, at ``enddef``: the distributed :class:`CellDirectory` against what
the plugin did before (every rank's cells gathered on every rank into two tables of the grid).

    python bench/bench_directory.py [--ranks 4 16] [--cells 6599680]

Each rank holds a round-robin share of the host's cells (the worst case for locality) and looks
up a quarter of its share of cells anywhere in the grid, as the bands ask for the cells they
touch. 6,599,680 cells is the IFS TCo1279 grid (about 9 km). Prints a markdown table: the slowest
rank's time and the largest growth of a rank's peak memory, per number of ranks and method.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("gathered tables", "directory")


def run(comm, method: str, ncells: int) -> tuple[float, float]:
    """(seconds, growth of this process's peak memory in MB) for one method on ``comm``; checks the
    answers. Collective."""
    import numpy as np

    from ai4land_coupler.partition import CellDirectory

    cells = np.arange(comm.rank, ncells, comm.size, dtype=np.int64)
    asked = np.random.default_rng(comm.rank).integers(0, ncells, size=max(1, ncells // (4 * comm.size)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    comm.barrier()
    t0 = time.perf_counter()
    if method == "directory":
        owner, position = CellDirectory(comm, cells, ncells).lookup(asked)
    else:
        owner_of, position_of = np.full(ncells, -1, dtype=np.int64), np.zeros(ncells, dtype=np.int64)
        for rank, theirs in enumerate(comm.allgather(cells)):
            owner_of[theirs], position_of[theirs] = rank, np.arange(theirs.size)
        owner, position = owner_of[asked], position_of[asked]
    comm.barrier()
    seconds = time.perf_counter() - t0
    if not ((owner == asked % comm.size).all() and (position == asked // comm.size).all()):
        raise AssertionError(f"{method}: wrong ranks or places")
    return seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def measure(ranks=(4, 16), ncells: int = 6_599_680) -> list[dict]:
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for n in ranks:
        for method in METHODS:
            out = subprocess.run(["mpirun", "--oversubscribe", "-n", str(n), sys.executable, __file__, "--worker",
                                  method, "--cells", str(ncells)], capture_output=True, text=True, env=env, timeout=600)
            if out.returncode:
                raise RuntimeError(f"{method} on {n} ranks failed: {out.stderr[-2000:]}")
            seconds, memory = (float(v) for v in out.stdout.split("ai4land_directory")[1].split()[:2])
            rows.append({"ranks": n, "cells": ncells, "method": method, "seconds": seconds, "memory_mb": memory})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| ranks | host cells | method | slowest rank (s) | peak memory growth per rank (MB) |",
             "| ---: | ---: | --- | ---: | ---: |"]
    lines += [f"| {r['ranks']} | {r['cells']:,} | {r['method']} | {r['seconds']:.2f} | {r['memory_mb']:.0f} |"
              for r in rows]
    return "\n".join(lines)


def _worker(method: str, ncells: int) -> None:
    from mpi4py import MPI

    from ai4land_coupler.comm import MPIComm

    comm = MPIComm(MPI.COMM_WORLD)
    results = comm.allgather(run(comm, method, ncells))
    if comm.rank == 0:
        print("ai4land_directory", max(r[0] for r in results), max(r[1] for r in results))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--cells", type=int, default=6_599_680)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.cells)
    else:
        print(table(measure(tuple(args.ranks), args.cells)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
