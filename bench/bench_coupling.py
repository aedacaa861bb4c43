"""Wall time of the coupled Fortran mock host, one model year with monthly LAI, at several rank counts.

    python bench/bench_coupling.py [--ranks 1 2 4] [--years 1]

Prints a markdown table: total wall time of mpirun (including the embedded Python start), the
host's time for the model year, and the plugin's own time in the emulators (rank 0).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--years", type=int, default=1)
    args = parser.parse_args()
    host = REPO / "build" / "ai4land_mock_host"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plugin = write_namelist(tmp / "ai4land_in", WORLD)
        for n in args.ranks:
            nml = tmp / f"host{n}.nml"
            nml.write_text(f"&mock_host_nml\n nlat = 90\n nlon = 180\n start_year = 2031\n nyears = {args.years}\n"
                           f" output_file = 'out{n}.nc'\n ai4land_namelist = '{plugin}'\n/\n")
            t0 = time.perf_counter()
            proc = run_mpi(n, [str(host), str(nml)], cwd=tmp, timeout=1800)
            wall = time.perf_counter() - t0
            if proc.returncode:
                print(proc.stdout + proc.stderr, file=sys.stderr)
                return proc.returncode
            year = sum(float(m) for m in re.findall(r"steps, ([0-9.]+) s\]", proc.stdout))
            emu = re.search(r"\[ai4land r0\].*time in emulators: landuse ([0-9.]+) s, lai ([0-9.]+) s", proc.stderr)
            rows.append((n, wall, year, *(map(float, emu.groups()) if emu else (float("nan"),) * 2)))
    print("| ranks | mpirun wall (s) | model years (s) | rank 0 land use (s) | rank 0 LAI (s) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for n, wall, year, lu, lai in rows:
        print(f"| {n} | {wall:.1f} | {year:.1f} | {lu:.1f} | {lai:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
