"""(a) The coupled step against a bare PyTorch forward over the same tiles, in one process.

    python bench/bench_step.py [--threads 2] [--repeats 5]

The coupled step is what the host waits for in ``Component.step``: the input features, the halo
and tile-sum exchanges, the Gaussian blend, for land use the cell work (the softmax, the
projection on the scenario, the allocation and the entropy, in one pass) and the conservation
check, and the host-grid means. The bare forward is the network
alone on the same tiles in the same batches (``Emulator.predict_batch``), timed inside the step.
Medians over ``repeats`` model years (a land-use step on 1 January, an LAI step on 1 February);
the ratio is the median of the per-step ratios.

A second table says where the median step's time goes: each stage is timed by wrapping the
functions that do it (:data:`STAGES`), and "other" is what no stage covers.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import WORLD, write_namelist  # noqa: E402


# stage → the functions that do it, as (module, owner in that module or None, name).
STAGES = {
    "network (bare forward)": [("emulators.checkpoint", "Emulator", "predict_batch")],
    "tiles: weighted sums": [("inference", None, "_band_sums")],
    "halo exchange, edges": [("inference", None, "with_halo"), ("component", None, "with_halo")],
    "blend of the tile sums": [("inference", None, "blend"), ("component", None, "blend")],
    "input features": [("emulators.landuse", "LandUseEmulator", "inputs"), ("emulators.lai", "LaiEmulator", "inputs")],
    "scenario read": [("datasets", "WorldData", "scenario_groups_fine")],
    "drivers read": [("component", "Component", "_drivers")],
    "cells: softmax, projection, allocation, entropy": [("emulators.landuse", "LandUseEmulator", "post_process")],
    "softplus": [("emulators.lai", "LaiEmulator", "masked_lai")],
    "conservation check": [("component", "Component", "_check_conservation")],
    "host-cell means": [("component", "Component", "_means")],
}
NESTED = ("tiles: weighted sums", "network (bare forward)")  # the first stage holds the second
SCOPES = {"landuse": "_advance_landuse", "lai": "_advance_lai"}  # the Component method of each emulator's step


def _wrap(owner, name: str, before, after) -> tuple:
    """Replace ``owner.name`` by a function that calls ``before()``, the original, then
    ``after(token)`` with what ``before`` returned; returns what undoes it."""
    original = owner.__dict__[name]
    function = original.__func__ if isinstance(original, staticmethod) else original

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        token = before()
        try:
            return function(*args, **kwargs)
        finally:
            after(token)
    setattr(owner, name, staticmethod(wrapper) if isinstance(original, staticmethod) else wrapper)
    return owner, name, original


@contextlib.contextmanager
def _timed_stages(spent: dict):
    """Time every stage: ``spent[(emulator, stage)]`` adds up the stage's time inside that emulator's
    step. Unwrapped on exit."""
    import importlib

    scope = [None]
    undo = []
    component = importlib.import_module("ai4land_coupler.component").Component
    for kind, method in SCOPES.items():
        undo.append(_wrap(component, method, lambda kind=kind: scope.__setitem__(0, kind),
                          lambda _: scope.__setitem__(0, None)))
    for stage, functions in STAGES.items():
        for module_name, owner_name, name in functions:
            module = importlib.import_module(f"ai4land_coupler.{module_name}")
            owner = getattr(module, owner_name) if owner_name else module

            def add(t0, stage=stage):
                spent[(scope[0], stage)] += time.perf_counter() - t0
            undo.append(_wrap(owner, name, time.perf_counter, add))
    try:
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def measure(threads: int = 2, world: Path = WORLD, repeats: int = 5) -> list[dict]:
    import torch

    from ai4land_coupler.comm import SerialComm
    from ai4land_coupler.component import Component
    from ai4land_coupler.partition import Box

    torch.set_num_threads(threads)
    spent = collections.defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp, _timed_stages(spent):
        nml = write_namelist(Path(tmp) / "bench.nml", world, prefetch_landuse=".false.", torch_threads=threads)
        c = Component()
        c.init(SerialComm(), nml)
        c.def_partition(Box(0, 0, 180, 90))
        c.enddef()
        last = max(c.world.scenario_years)  # the last years of the scenario
        first = last - repeats + 1
        c.step((first - 1, 1, 1, 0))  # warm-up: the initial map, the first land use and LAI
        samples = {"landuse": [], "lai": []}
        for year in range(first, last + 1):
            for kind, when in (("landuse", (year, 1, 1, 0)), ("lai", (year, 2, 1, 0))):
                before = dict(c.timings)
                spent.clear()
                c.step(when)
                step = c.timings[kind] - before.get(kind, 0.0)
                samples[kind].append((step, {stage: t for (k, stage), t in spent.items() if k == kind}))
        c.finalize()
    tiles = len(c.layout.lattice.tiles)
    rows = []
    for kind, runs in samples.items():
        forward = [s["network (bare forward)"] for _, s in runs]
        step, spent_in = sorted(runs, key=lambda run: run[0])[len(runs) // 2]  # the median step
        stages = {stage: spent_in.get(stage, 0.0) for stage in STAGES}
        stages[NESTED[0]] -= stages[NESTED[1]]
        stages["other"] = step - sum(stages.values())
        rows.append({"emulator": kind, "tiles": tiles, "steps": len(runs), "step_s": statistics.median(t for t, _ in runs),
                     "forward_s": statistics.median(forward),
                     "ratio": statistics.median(t / f for (t, _), f in zip(runs, forward)), "stages": stages,
                     "stages_step_s": step})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| emulator | tiles of 128² | steps | coupled step (s) | bare forward (s) | step / forward |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['emulator']} | {r['tiles']} | {r['steps']} | {r['step_s']:.3f} | {r['forward_s']:.3f} | "
              f"{r['ratio']:.2f} |" for r in rows]
    lines += ["", "Where the median step's time goes (ms; \"tiles\" excludes the network inside it):", "",
              "| stage | " + " | ".join(r["emulator"] for r in rows) + " |",
              "| --- |" + " ---: |" * len(rows)]
    for stage in rows[0]["stages"]:
        values = [r["stages"][stage] * 1e3 for r in rows]
        if any(abs(v) >= 0.05 for v in values):
            lines.append(f"| {stage} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="model years measured")
    args = parser.parse_args()
    print(table(measure(args.threads, repeats=args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
