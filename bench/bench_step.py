"""(a) The coupled step against a bare PyTorch forward over the same tiles, in one process.

    python bench/bench_step.py [--threads 2] [--repeats 5]

The coupled step is what the host waits for in ``Component.step``: the input features, the halo
and tile-sum exchanges, the plugin's network, the Gaussian blend, for land use the cell work (the
softmax, the projection on the scenario, the allocation and the entropy, in one pass) and the
conservation check, and the host-grid means. It is set against two forwards over the same tiles
in the same batches:

* the **bare PyTorch forward**: the trained model as PyTorch runs it (``Emulator.model``: eval and
  inference mode, channels-last, its BatchNorms as trained), timed right after the step on the
  batches the step predicted, each the median of 3 runs (:func:`bare_forward`; its output must
  match the plugin's);
* the **plugin's network** (``Emulator.predict_batch``: the BatchNorms folded, each convolution
  fused with its shift and activation), timed inside the step. The step over it is what the
  coupling costs beside the network.

Medians over ``repeats`` model years (a land-use step on 1 January, an LAI step on 1 February);
each ratio is the median of the per-step ratios.

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
    "network (the plugin's)": [("emulators.checkpoint", "Emulator", "predict_batch")],
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
NESTED = ("tiles: weighted sums", "network (the plugin's)")  # the first stage holds the second
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


@contextlib.contextmanager
def _recorded_batches(batches: list):
    """Append every (emulator, batch, output) of ``Emulator.predict_batch`` to ``batches`` (the
    arrays themselves, not copies). Unwrapped on exit."""
    from ai4land_coupler.emulators.checkpoint import Emulator

    original = Emulator.predict_batch

    @functools.wraps(original)
    def record(self, x):
        out = original(self, x)
        batches.append((self, x, out))
        return out
    Emulator.predict_batch = record
    try:
        yield
    finally:
        Emulator.predict_batch = original


def bare_forward(batches: list, runs: int = 3) -> float:
    """Seconds of the trained models in plain PyTorch on the recorded ``batches`` of
    :func:`_recorded_batches`: each batch's median of ``runs`` back-to-back runs, summed. Warm,
    where the plugin's network runs once after the cell work; a median, as the step is one run
    (the fastest of several would set the VM's quietest moment against a typical step). Each
    output must be the plugin's to 1e-4 of its largest value (the same tiles, the same function)."""
    import numpy as np
    from bench_flops import _unfolded  # the trained model in plain PyTorch, as section (c) runs it

    seconds = 0.0
    for emulator, x, expected in batches:
        run = _unfolded(emulator, None)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            out = run(x)
            times.append(time.perf_counter() - t0)
        seconds += statistics.median(times)
        scale = max(float(np.abs(expected).max()), 1.0)
        if out.shape != expected.shape or not np.abs(out - expected).max() <= 1e-4 * scale:
            raise RuntimeError(f"{emulator.name}: the bare forward differs from the plugin's on a batch of {x.shape}")
    return seconds


def measure(threads: int = 2, world: Path = WORLD, repeats: int = 5) -> list[dict]:
    import torch

    from ai4land_coupler.comm import SerialComm
    from ai4land_coupler.component import Component
    from ai4land_coupler.partition import Box

    torch.set_num_threads(threads)
    spent = collections.defaultdict(float)
    batches = []
    with tempfile.TemporaryDirectory() as tmp, _timed_stages(spent), _recorded_batches(batches):
        nml = write_namelist(Path(tmp) / "bench.nml", world, prefetch_landuse=".false.", torch_threads=threads)
        c = Component()
        c.init(SerialComm(), nml)
        c.def_partition(Box(0, 0, 180, 90))
        c.enddef()
        last = max(c.world.scenario_years)  # the last years of the scenario
        first = last - repeats + 1
        c.step((first - 1, 1, 1, 0))  # warm-up: the initial map, the first land use and LAI
        bare_forward(batches)
        samples = {"landuse": [], "lai": []}
        for year in range(first, last + 1):
            for kind, when in (("landuse", (year, 1, 1, 0)), ("lai", (year, 2, 1, 0))):
                before = dict(c.timings)
                spent.clear()
                batches.clear()
                c.step(when)
                step = c.timings[kind] - before.get(kind, 0.0)
                stages = {stage: t for (k, stage), t in spent.items() if k == kind}
                samples[kind].append((step, stages, bare_forward([b for b in batches if b[0].kind == kind])))
        batches.clear()
        c.finalize()
    tiles = len(c.layout.lattice.tiles)
    rows = []
    for kind, runs in samples.items():
        network = [s[NESTED[1]] for _, s, _ in runs]
        step, spent_in, _ = sorted(runs, key=lambda run: run[0])[len(runs) // 2]  # the median step
        stages = {stage: spent_in.get(stage, 0.0) for stage in STAGES}
        stages[NESTED[0]] -= stages[NESTED[1]]
        stages["other"] = step - sum(stages.values())
        rows.append({"emulator": kind, "tiles": tiles, "steps": len(runs), "step_s": statistics.median(t for t, *_ in runs),
                     "bare_s": statistics.median(b for *_, b in runs),
                     "ratio": statistics.median(t / b for t, _, b in runs),
                     "network_s": statistics.median(network),
                     "network_ratio": statistics.median(t / n for (t, *_), n in zip(runs, network)),
                     "stages": stages, "stages_step_s": step})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| emulator | tiles of 128² | steps | coupled step (s) | bare PyTorch forward (s) | step / bare forward "
             "| plugin's network in the step (s) | step / plugin's network |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['emulator']} | {r['tiles']} | {r['steps']} | {r['step_s']:.3f} | {r['bare_s']:.3f} | "
              f"{r['ratio']:.2f} | {r['network_s']:.3f} | {r['network_ratio']:.2f} |" for r in rows]
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
