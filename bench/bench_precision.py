"""(g) bfloat16: how much faster, and how much the coupled outputs change.

    python bench/bench_precision.py [--threads 2] [--year 2031]

Two serial runs of the component on the default world, one with ``precision = 'fp32'`` and one
with ``'bf16'``, each stepped to 1 January (land use) and 1 February (LAI) of ``year``, from the
same initial map. Reported per emulator: the step time at each precision, and the change of what
the host gets (the host-cell fields) and of the fine maps behind them. The land-use projection,
allocation and means run in float64 after the network either way, so the scenario is conserved
to rounding at both precisions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import WORLD, write_namelist  # noqa: E402

NLAT, NLON = 90, 180


def run(precision: str, year: int, threads: int, world: Path) -> dict:
    """The host fields, fine maps and step times of one serial run at ``precision``."""
    import torch

    from ai4land_coupler.comm import SerialComm
    from ai4land_coupler.component import Component
    from ai4land_coupler.partition import Box

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        nml = write_namelist(Path(tmp) / "p.nml", world, prefetch_landuse=".false.", torch_threads=threads,
                             precision=f"'{precision}'")
        c = Component()
        c.init(SerialComm(), nml)
        c.def_partition(Box(0, 0, NLON, NLAT))
        c.enddef()
        c.step((year - 1, 1, 1, 0))  # the initial map and a warm-up of both emulators
        out = {"precision": precision}
        for kind, when, names in (("landuse", (year, 1, 1, 0), ("landuse_fraction",)), ("lai", (year, 2, 1, 0), ("lai",))):
            before = c.timings.get(kind, 0.0)
            t0 = time.perf_counter()
            c.step(when)
            out[f"{kind}_step_s"] = c.timings[kind] - before if kind in c.timings else time.perf_counter() - t0
            for name in names:
                values = np.zeros((len(c.field_levels(name)), c.local_size))
                c.get(name, values)
                out[name] = values
        out["fine_map"], out["fine_lai"], out["land"] = c.fine_map.copy(), c.fine_lai.copy(), c.world.land_mask.copy()
        c.finalize()
    return out


def measure(year: int = 2031, threads: int = 2, world: Path = WORLD) -> dict:
    fp32, bf16 = (run(p, year, threads, world) for p in ("fp32", "bf16"))
    land = fp32["land"]
    lai_change = np.abs(bf16["fine_lai"] - fp32["fine_lai"])[land]
    return {
        "landuse_step_s": (fp32["landuse_step_s"], bf16["landuse_step_s"]),
        "lai_step_s": (fp32["lai_step_s"], bf16["lai_step_s"]),
        "fraction_max": float(np.abs(bf16["landuse_fraction"] - fp32["landuse_fraction"]).max()),
        "fraction_p99": float(np.percentile(np.abs(bf16["landuse_fraction"] - fp32["landuse_fraction"]), 99)),
        "fraction_mean": float(np.abs(bf16["landuse_fraction"] - fp32["landuse_fraction"]).mean()),
        "map_changed": float((bf16["fine_map"] != fp32["fine_map"])[land].mean()),
        "host_lai_max": float(np.abs(bf16["lai"] - fp32["lai"]).max()),
        "fine_lai_max": float(lai_change.max()),
        "fine_lai_p99": float(np.percentile(lai_change, 99)),
        "fine_lai_mean": float(lai_change.mean()),
        "lai_mean": float(fp32["fine_lai"][land].mean()),
    }


def table(r: dict) -> str:
    lines = ["| emulator | step fp32 (s) | step bf16 (s) | speed-up | change of the outputs with bf16 |",
             "| --- | ---: | ---: | ---: | --- |"]
    lu, lai = r["landuse_step_s"], r["lai_step_s"]
    lines.append(f"| landuse | {lu[0]:.3f} | {lu[1]:.3f} | {lu[0] / lu[1]:.2f} | host class fractions: largest "
                 f"{r['fraction_max']:.2e}, 99th percentile {r['fraction_p99']:.2e}, mean {r['fraction_mean']:.2e}; "
                 f"fine map: {100 * r['map_changed']:.2f} % of land pixels change class |")
    lines.append(f"| lai | {lai[0]:.3f} | {lai[1]:.3f} | {lai[0] / lai[1]:.2f} | host LAI: largest "
                 f"{r['host_lai_max']:.2e} m2 m-2; fine LAI over land: largest {r['fine_lai_max']:.2e}, 99th "
                 f"percentile {r['fine_lai_p99']:.2e}, mean {r['fine_lai_mean']:.2e} m2 m-2 (mean LAI "
                 f"{r['lai_mean']:.2f}) |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--year", type=int, default=2031)
    args = parser.parse_args()
    print(table(measure(args.year, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
