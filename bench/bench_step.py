"""(a) The coupled step against a bare PyTorch forward over the same tiles, in one process.

    python bench/bench_step.py [--threads 2]

The coupled step is what the host waits for in ``Component.step``: the input features, the halo
and tile-sum exchanges, the Gaussian blend, for land use the projection on the scenario, the
conservation check and the allocation, and the host-grid means. The bare forward is the network
alone on the same tiles in the same batches (``Emulator.predict_batch``), timed inside the step.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import WORLD, write_namelist  # noqa: E402


def measure(threads: int = 2, world: Path = WORLD) -> list[dict]:
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
        c.step((2031, 1, 1, 0))  # warm-up: the initial map, the first land use and LAI
        rows = []
        for kind, when in (("landuse", (2032, 1, 1, 0)), ("lai", (2032, 2, 1, 0))):
            before, forward[kind] = dict(c.timings), 0.0
            c.step(when)
            step = c.timings[kind] - before.get(kind, 0.0)
            tiles = len(c.layout.lattice.tiles)
            rows.append({"emulator": kind, "tiles": tiles, "step_s": step, "forward_s": forward[kind],
                         "ratio": step / forward[kind]})
        c.finalize()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| emulator | tiles of 128² | coupled step (s) | bare forward (s) | step / forward |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['emulator']} | {r['tiles']} | {r['step_s']:.3f} | {r['forward_s']:.3f} | {r['ratio']:.2f} |"
              for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(table(measure(args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
