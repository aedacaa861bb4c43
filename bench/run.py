"""The benchmark suite: prints every result table and writes them, with the machine, to docs/performance.md.

    bash scripts/setup.sh && source scripts/env.sh && python bench/run.py [--quick] [--out docs/performance.md]

(a) coupled step / bare forward      bench_step.py
(b) bridge latency and copies        bench_bridge.py + bridge_latency.F90
(c) forward FLOP/s / matmul peak     bench_flops.py
(d) scaling over 1, 2, 4 ranks       bench_coupling.py
(e) peak memory per rank             bench_coupling.py
(f) year-boundary stall, prefetch    bench_prefetch.py
(g) bf16: speed and output change    bench_precision.py
(h) host-cell directory at enddef    bench_directory.py

The goals table compares each ratio, measured in this run, with the goals of issue 6.
``--quick`` shortens the runs (fewer calls, repeats and ranks) for a smoke test.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_bridge  # noqa: E402
import bench_coupling  # noqa: E402
import bench_directory  # noqa: E402
import bench_flops  # noqa: E402
import bench_precision  # noqa: E402
import bench_prefetch  # noqa: E402
import bench_step  # noqa: E402


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    cores = len(os.sched_getaffinity(0))
    mem = next((int(line.split()[1]) // 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    mpi = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    return (f"{cpu}, {cores} cores available, {mem} GiB memory; GPU: {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads by default), {' '.join(mpi)}")


def scale_on_paper(step: list[dict], flops_per_tile: dict[str, float]) -> str:
    """The 1 km global year, from the per-tile cost measured in (a) and the FLOPs counted in (c)."""
    from ai4land_coupler.inference import make_lattice

    lattice = make_lattice(21600, 43200, 128, 0.5, wrap_lon=True)
    tiles = len(lattice.lat_starts) * len(lattice.lon_starts)
    per_tile = {r["emulator"]: r["network_s"] / r["tiles"] for r in step}
    runs = {"landuse": 1, "lai": 12}  # per model year: one land use, twelve monthly LAI (daily interpolates them)
    tflop = sum(runs[k] * tiles * flops_per_tile[k] for k in runs) / 1e12
    cpu_hours = sum(runs[k] * tiles * per_tile[k] for k in runs) / 3600
    pixels = 21600 * 43200
    state_gb = pixels * (1 + 4 + 2 * 4 + 7 * 4 + 1 + 8) / 1e9  # map, LAI, 2 months, static fields, mask, area
    halo_mb = 64 * 43200 * (27 * 4 + 8 * 4) / 1e6  # input rows (27 channels) + land-use sums (8 levels), float32
    lines = [
        f"A global 1 km grid is 43200 × 21600 = {pixels / 1e9:.2f} G pixels: **{tiles:,} tiles** of 128² at step 64.",
        "",
        f"* **Compute.** One model year is 1 land-use and 12 monthly LAI predictions: {tflop:,.0f} TFLOP "
        f"({flops_per_tile['landuse'] / 1e9:.2f} and {flops_per_tile['lai'] / 1e9:.2f} GFLOP per tile, counted). At "
        f"the per-tile cost measured here on CPU ({per_tile['landuse']:.3f} s and {per_tile['lai']:.3f} s) that is "
        f"{cpu_hours:,.0f} hours on this 2-core machine. On GPUs that sustain 100 TFLOP/s each (bf16 on an H100 at about 10–15 % "
        f"of its dense peak, usual for convolutions this narrow) it is {tflop / 100:,.0f} GPU-seconds per model year: "
        f"{tflop / 100 / 64:,.1f} s on 64 GPUs, {tflop / 100 / 256:,.1f} s on 256.",
        f"* **Memory.** The state and the static inputs are about {state_gb:,.0f} GB for the globe, held in slabs: "
        f"{state_gb / 64:,.1f} GB per rank on 64 ranks. A prediction adds, per slab, its inputs (27 float32 channels) "
        f"and tile sums (8 float32 levels), about {pixels * (27 * 4 + 8 * 4) / 1e9:,.0f} GB over the globe; a rank "
        "can predict its bands one at a time to cap this.",
        f"* **Communication.** Each slab receives the 64 rows its tiles reach beyond it and sends back the sums over "
        f"them: {halo_mb:,.0f} MB per prediction and slab boundary, about {halo_mb / 25:,.0f} ms at 25 GB/s, whatever the number of "
        "ranks. The host-cell means and the drivers are small beside it.",
        "* **What dominates.** Compute, by far, up to the point where a slab holds only a few bands: per rank it "
        "shrinks as 1/N while the halo stays 64 rows, so the exchange reaches the compute at N ≈ 21600 rows / "
        "(a few × 64), a few hundred ranks. Compute and memory grow with the pixel count (×4 per halving of the "
        "cell size), the halo with the grid width (×2).",
    ]
    return "\n".join(lines)


def goal_rows(step, bridge, flops, prefetch) -> list[tuple[str, str, str, bool]]:
    """(measure, goal, measured, met) for the goals of issue 6."""
    rows = []
    for r in step:
        rows.append((f"coupled step / bare PyTorch forward ({r['emulator']})", "≤ 1.10", f"{r['ratio']:.2f}",
                     r["ratio"] <= 1.10))
        rows.append((f"coupled step / the plugin's own network in it ({r['emulator']}; the coupling beside the "
                     "network: our stricter measure, not the issue's)", "≤ 1.10", f"{r['network_ratio']:.2f}",
                     r["network_ratio"] <= 1.10))
    for r in bridge:
        if r["case"].startswith("empty call") or r["case"].startswith("copies"):
            rows.append((r["case"], r["goal"], bench_bridge._cell(r["value"]), bool(r["met"])))
    for r in bench_flops.efficiency(flops):
        rows.append((f"U-Net forward / fp32 matmul peak ({r['emulator']}, {r['threads']} threads, {r['variant']})",
                     "≥ 0.50", f"{r['ratio_to_peak']:.2f}", r["ratio_to_peak"] >= 0.5))
    rows.append(("host stall at the year boundary, prefetch on / emulator compute", "≤ 0.10",
                 f"{prefetch['ratio']:.2f}", prefetch["ratio"] <= 0.10))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about 3 min to compile)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "performance.md")
    args = parser.parse_args()
    quick = args.quick
    sections = []

    def section(title: str, text: str) -> None:
        print(f"\n## {title}\n\n{text}", flush=True)
        sections.append((title, text))

    step = bench_step.measure(threads=2, repeats=2 if quick else 5)
    section("(a) Coupled step against a bare forward", bench_step.table(step))
    bridge = bench_bridge.bench_bridge(ncalls=20_000 if quick else 200_000)
    section("(b) Bridge from Fortran", bench_bridge.markdown(bridge))
    flops = bench_flops.bench_flops(threads=(2,) if quick else (2, 1), repeats=2 if quick else 5,
                                    variants=["baseline"] if quick else None, torch_compile=args.compile)
    section("(c) U-Net forward against the matmul peak", bench_flops.markdown(flops))
    timing, memory = bench_coupling.tables(*bench_coupling.measure((1, 2) if quick else (1, 2, 4)))
    section("(d) Scaling over ranks on one machine", timing)
    section("(e) Peak memory per rank", memory)
    prefetch = bench_prefetch.measure(ranks=2, years=2 if quick else 3)
    section("(f) Year-boundary stall with and without the land-use prefetch", bench_prefetch.table(prefetch))
    section("(g) bfloat16: speed and the change of the coupled outputs", bench_precision.table(bench_precision.measure()))
    section("(h) Where the host cells live, at enddef",
            bench_directory.table(bench_directory.measure((2, 4) if quick else (4, 16), 200_000 if quick else 6_599_680)))
    per_tile = {kind: next(r["gflop"] * 1e9 / r["batch"] for r in flops if r.get("emulator") == name)
                for kind, name in bench_flops.SHIPPED}
    section("Scale on paper: a global 1 km year", scale_on_paper(step, per_tile))
    goals = ["| measure | goal | measured | met |", "| --- | --- | ---: | --- |"]
    goals += [f"| {m} | {g} | {v} | {'yes' if ok else '**no**'} |" for m, g, v, ok in
              goal_rows(step, bridge, flops, prefetch)]
    section("Goals", "\n".join(goals))

    header = (f"# Performance\n\nGenerated by `python bench/run.py` on {datetime.date.today()}.\n\n"
              f"**Machine:** {machine()}.\n")
    body = "\n".join(f"\n## {title}\n\n{text}\n" for title, text in sections)
    notes = (HERE / "performance_notes.md").read_text() if (HERE / "performance_notes.md").exists() else ""
    if not quick:
        args.out.write_text(header + body + ("\n" + notes if notes else ""))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
