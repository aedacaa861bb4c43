"""(d) Scaling and (e) memory: the coupled Fortran mock host, one model year with monthly LAI, on
1, 2 and 4 ranks of one machine (torch threads per rank = cores / ranks).

    python bench/bench_coupling.py [--ranks 1 2 4] [--years 1]

Prints markdown tables: total wall time of mpirun (including the embedded Python start), the
host's time for the model year, the plugin's own time in the emulators (rank 0); and per rank its
peak memory against the fine-grid data it holds (its rows of the inputs and of the state).
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import WORLD, run_mpi, write_namelist  # noqa: E402


MEMORY = re.compile(r"\[ai4land r(\d+)\].*peak memory ([0-9.]+) MB, fine-grid data held ([0-9.]+) MB")


def measure(ranks=(1, 2, 4), years: int = 1) -> tuple[list[tuple], list[tuple]]:
    """(timing rows (ranks, wall, model years, land use, LAI), memory rows (ranks, rank, peak MB, held MB))."""
    host = REPO / "build" / "ai4land_mock_host"
    rows, memory = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plugin = write_namelist(tmp / "ai4land_in", WORLD)
        for n in ranks:
            nml = tmp / f"host{n}.nml"
            nml.write_text(f"&mock_host_nml\n nlat = 90\n nlon = 180\n start_year = 2031\n nyears = {years}\n"
                           f" output_file = 'out{n}.nc'\n ai4land_namelist = '{plugin}'\n/\n")
            t0 = time.perf_counter()
            proc = run_mpi(n, [str(host), str(nml)], cwd=tmp, timeout=1800)
            wall = time.perf_counter() - t0
            if proc.returncode:
                raise RuntimeError(proc.stdout + proc.stderr)
            memory += sorted((n, int(r), float(p), float(h)) for r, p, h in MEMORY.findall(proc.stderr))
            year = sum(float(m) for m in re.findall(r"steps, ([0-9.]+) s\]", proc.stdout))
            emu = re.search(r"\[ai4land r0\].*time in emulators: ([^;]*);", proc.stderr)
            spent = {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+) s", emu.group(1))} if emu else {}
            landuse = spent.get("landuse", 0.0) + spent.get("landuse_background", 0.0)
            rows.append((n, wall, year, landuse, spent.get("lai", float("nan"))))
    return rows, memory


def tables(rows, memory) -> tuple[str, str]:
    timing = ["| ranks | mpirun wall (s) | model years (s) | rank 0 land use (s, host thread + background) | rank 0 LAI (s) |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    timing += [f"| {n} | {wall:.1f} | {year:.1f} | {lu:.1f} | {lai:.1f} |" for n, wall, year, lu, lai in rows]
    held = ["| ranks | rank | peak memory (MB) | fine-grid data held (MB) |", "| ---: | ---: | ---: | ---: |"]
    held += [f"| {n} | {r} | {p:.0f} | {h:.1f} |" for n, r, p, h in memory]
    return "\n".join(timing), "\n".join(held)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--years", type=int, default=1)
    args = parser.parse_args()
    for text in tables(*measure(args.ranks, args.years)):
        print(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
