"""(f) The host's stall at the year boundary, with and without the land-use prefetch.

    python bench/bench_prefetch.py [--ranks 2] [--years 3] [--host-seconds 0.25]

The Fortran mock host steps monthly and computes ``--host-seconds`` of its own between steps (a
stand-in for its dynamics). LAI is off, so the step on 1 January holds only the land use. With
the prefetch off that step computes the year; with it on, the year was computed in the background
during the previous year and the step only blends, checks and maps it. Reported: the mean of the
year-boundary steps after the first year (the first has nothing to prefetch from), against the
emulator's compute time (the boundary step without prefetch).
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


def run_host(tmp: Path, ranks: int, years: int, host_seconds: float, prefetch: bool) -> dict:
    plugin = write_namelist(tmp / f"ai4land_{prefetch}", WORLD, do_dynamic_lai=".false.",
                            prefetch_landuse=".true." if prefetch else ".false.")
    nml = tmp / f"host_{prefetch}.nml"
    nml.write_text(f"&mock_host_nml\n nlat = 90\n nlon = 180\n start_year = 2031\n nyears = {years}\n"
                   f" output_file = 'out_{prefetch}.nc'\n ai4land_namelist = '{plugin}'\n"
                   f" host_seconds_per_step = {host_seconds}\n/\n")
    t0 = time.perf_counter()
    proc = run_mpi(ranks, [str(REPO / "build" / "ai4land_mock_host"), str(nml)], cwd=tmp, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(proc.stdout + proc.stderr)
    boundary = [float(v) for v in re.findall(r"year-boundary step ([0-9.]+) s", proc.stdout)]
    years_s = [float(v) for v in re.findall(r"steps, ([0-9.]+) s\]", proc.stdout)]
    background = re.search(r"\[ai4land r0\].*landuse_background ([0-9.]+) s", proc.stderr)
    return {"boundary": boundary, "years": years_s, "wall": wall,
            "background": float(background.group(1)) if background else 0.0}


def measure(ranks: int = 2, years: int = 3, host_seconds: float = 0.25) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        off = run_host(Path(tmp), ranks, years, host_seconds, prefetch=False)
        on = run_host(Path(tmp), ranks, years, host_seconds, prefetch=True)
    later = slice(1, None)
    compute = sum(off["boundary"][later]) / len(off["boundary"][later])
    stall = sum(on["boundary"][later]) / len(on["boundary"][later])
    return {"ranks": ranks, "years": years, "host_seconds": host_seconds, "off": off, "on": on,
            "compute_s": compute, "stall_s": stall, "ratio": stall / compute}


def table(r: dict) -> str:
    return "\n".join([
        "| prefetch | year-boundary step, years 2+ (s) | model years (s) | stall / emulator compute |",
        "| --- | ---: | ---: | ---: |",
        f"| off | {r['compute_s']:.3f} | {' '.join(f'{y:.1f}' for y in r['off']['years'])} | 1.00 |",
        f"| on | {r['stall_s']:.3f} | {' '.join(f'{y:.1f}' for y in r['on']['years'])} | {r['ratio']:.2f} |",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--host-seconds", type=float, default=0.25)
    args = parser.parse_args()
    print(table(measure(args.ranks, args.years, args.host_seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
