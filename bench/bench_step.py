"""(a) The coupled step against a bare PyTorch forward over the same tiles, in one process.

    python bench/bench_step.py [--threads 2]

The coupled step is what the host waits for in ``Component.step``: the input features, the halo
and tile-sum exchanges, the Gaussian blend, for land use the projection on the scenario, the
conservation check and the allocation, and the host-grid means. The bare forward is the network
alone on the same tiles in the same batches (``Emulator.predict_batch``), timed inside the step.
Medians over ``repeats`` model years (a land-use step on 1 January, an LAI step on 1 February);
the ratio is the median of the per-step ratios.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import WORLD, write_namelist  # noqa: E402


LAST_SCENARIO_YEAR = 2034  # of the generated world in data/world


def measure(threads: int = 2, world: Path = WORLD, repeats: int = 5) -> list[dict]:
    import torch

    from ai4land_coupler.comm import SerialComm
    from ai4land_coupler.component import Component
    from ai4land_coupler.partition import Box

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        nml = write_namelist(Path(tmp) / "bench.nml", world, prefetch_landuse=".false.", torch_threads=threads)
        c = Component()
        c.init(SerialComm(), nml)
        c.def_partition(Box(0, 0, 180, 90))
        c.enddef()
        forward = {"landuse": 0.0, "lai": 0.0}
        for kind, em in (("landuse", c.landuse_emulator), ("lai", c.lai_emulator)):
            def timed(x, em=em, kind=kind):
                t0 = time.perf_counter()
                y = type(em).predict_batch(em, x)
                forward[kind] += time.perf_counter() - t0
                return y
            em.predict_batch = timed
        first = LAST_SCENARIO_YEAR - repeats + 1
        c.step((first - 1, 1, 1, 0))  # warm-up: the initial map, the first land use and LAI
        samples = {"landuse": [], "lai": []}
        for year in range(first, LAST_SCENARIO_YEAR + 1):
            for kind, when in (("landuse", (year, 1, 1, 0)), ("lai", (year, 2, 1, 0))):
                before, forward[kind] = dict(c.timings), 0.0
                c.step(when)
                samples[kind].append((c.timings[kind] - before.get(kind, 0.0), forward[kind]))
        c.finalize()
    tiles = len(c.layout.lattice.tiles)
    return [{"emulator": kind, "tiles": tiles, "steps": len(s), "step_s": statistics.median(a for a, _ in s),
             "forward_s": statistics.median(b for _, b in s), "ratio": statistics.median(a / b for a, b in s)}
            for kind, s in samples.items()]


def table(rows: list[dict]) -> str:
    lines = ["| emulator | tiles of 128² | steps | coupled step (s) | bare forward (s) | step / forward |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['emulator']} | {r['tiles']} | {r['steps']} | {r['step_s']:.3f} | {r['forward_s']:.3f} | {r['ratio']:.2f} |"
              for r in rows]
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
