"""FLOPs, speed and efficiency of the shipped emulators' forward pass on the CPU, and faster variants.

    python bench/bench_flops.py [--threads 2 1] [--batch 8] [--tile 128] [--repeats 5] [--no-compile] [--default-heap]

For each shipped emulator (landuse_unet_v1, lai_unet_v1), on a batch of ``batch`` random tiles
of ``tile`` × ``tile`` (seeded):

* GFLOP of one forward pass, counted by ``torch.utils.flop_counter.FlopCounterMode`` (it counts
  the convolutions and matrix products, the 1×1 convolutions of the FiLM blocks and the head
  included; elementwise work counts 0);
* the forward's best wall time over the repeats (``torch.inference_mode``, after a warm-up;
  best-of, like the peak, so that both measure the machine when nothing else slows it) at each torch thread
  count, the achieved GFLOP/s and its ratio to the fp32 ``torch.mm`` peak at the same thread count
  (best of square matrices of 1024, 2048, 4096); goal ≥ 0.5;
* the baseline is ``Emulator.predict_batch`` as the plugin runs it (its inference network:
  BatchNorm and the FiLM biases folded into the weights, channels-last); variants: the model as
  trained, without the folding (``unfolded``), the baseline in bfloat16 autocast
  (``bf16_autocast``, the namelist's ``precision = 'bf16'``; its difference to the baseline is the
  accuracy change), TorchScript trace + freeze (folds BatchNorm into the convolutions), +
  optimize_for_inference
  (oneDNN layouts and fusions), the oneDNN Graph fuser, mkldnn disabled, ``torch.compile``
  (inductor; compiled once per thread count, as its kernels fix their thread count), and the
  1×1 convolutions (``MatmulConv1x1`` of emulators/unet.py: the FiLM blocks and the head) as the
  per-channel fused multiply-adds the plugin ran before it used one matrix product
  (``fixed_order_1x1``, channels_last, unfolded). Each one's
  best time, speed-up over the baseline, largest absolute and relative difference to the
  baseline output, and whether its output has the same bits at every thread count (the
  emulators promise that: see ``emulators/unet.py``).

:func:`bench_flops` returns the rows (``kind`` "peak" or "forward"); :func:`markdown` makes the
tables that :func:`main` prints. A variant that fails reports its error in ``note``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import time
import warnings
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

SHIPPED = (("landuse", "landuse_unet_v1"), ("lai", "lai_unet_v1"))
MM_SIZES = (1024, 2048, 4096)
RATIO_GOAL = 0.5
#: A variant worth adopting: this much faster than the baseline, and this close to its output.
SPEEDUP_GOAL = 1.15
REL_DIFF_LIMIT = 1e-4

Runner = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- FLOPs and peak


def count_flops(model: torch.nn.Module, batch: int, in_channels: int, tile: int = 128) -> int:
    """FLOPs of one forward pass of ``model`` on a (batch, in_channels, tile, tile) float32 input."""
    x = torch.zeros(batch, in_channels, tile, tile)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def matmul_gflops(n: int, threads: int, repeats: int = 3, min_seconds: float = 0.5) -> float:
    """Best fp32 GFLOP/s of ``torch.mm`` on two n × n matrices at ``threads`` torch threads."""
    with torch_threads(threads):
        a, b = torch.randn(n, n), torch.randn(n, n)
        out = torch.empty(n, n)
        torch.mm(a, b, out=out)
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        calls = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-6)))
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                torch.mm(a, b, out=out)
            best = min(best, (time.perf_counter() - t0) / calls)
    return 2.0 * n**3 / best / 1e9


def matmul_peak(threads: int, sizes=MM_SIZES) -> tuple[float, int]:
    """(best GFLOP/s, its matrix size) of :func:`matmul_gflops` over ``sizes``."""
    return max((matmul_gflops(n, threads), n) for n in sizes)


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------- variants
# Each builds, from an emulator and an example input, a function numpy batch -> numpy output that
# does what Emulator.predict_batch does (from_numpy, forward, .numpy()) in its own way.


def _baseline(emulator, example: torch.Tensor) -> Runner:
    return emulator.predict_batch


def _unfolded(emulator, example: torch.Tensor) -> Runner:
    """The model as trained (BatchNorm and the FiLM biases as layers of their own), channels-last."""
    def run(x):
        with torch.inference_mode():
            return emulator.model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).contiguous().numpy()
    return run


def _bf16(emulator, example: torch.Tensor) -> Runner:
    """The plugin with ``precision = 'bf16'``."""
    clone = copy.copy(emulator)  # shares the model and its inference network
    clone.precision = "bf16"
    return clone.predict_batch


def _traced(emulator, example: torch.Tensor, optimize: bool = False) -> Runner:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        model = torch.jit.freeze(torch.jit.trace(copy.deepcopy(emulator.model), example))
        if optimize:
            model = torch.jit.optimize_for_inference(model)

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()
    return run


def _jit_freeze(emulator, example):
    return _traced(emulator, example)


def _jit_optimize(emulator, example):
    return _traced(emulator, example, optimize=True)


def _onednn_graph(emulator, example: torch.Tensor) -> Runner:
    torch.jit.enable_onednn_fusion(True)
    try:
        traced = _traced(emulator, example)
        for _ in range(2):  # the profiling executor fuses on the 2nd call
            traced(example.numpy())
    finally:
        torch.jit.enable_onednn_fusion(False)

    def run(x):
        torch.jit.enable_onednn_fusion(True)
        try:
            return traced(x)
        finally:
            torch.jit.enable_onednn_fusion(False)
    return run


def _mkldnn_off(emulator, example: torch.Tensor) -> Runner:
    def run(x):
        with torch.backends.mkldnn.flags(enabled=False):
            return emulator.predict_batch(x)
    return run


def _compiled(emulator, example: torch.Tensor) -> Runner:
    torch._dynamo.reset()
    model = torch.compile(copy.deepcopy(emulator.model), dynamic=False)

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()
    run(example.numpy())  # compiles
    return run


def _fixed_order_1x1(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """The 1×1 convolution as the plugin ran it before: bias + Σ_k w_k·x_k, one in-place fused
    multiply-add per input channel over the whole tensor."""
    w = self.weight[:, :, 0, 0]
    bias = self.bias if shift is None else self.bias + shift
    y = bias.view(1, -1, 1, 1) + w[:, 0].view(1, -1, 1, 1) * x[:, 0:1]
    for k in range(1, x.shape[1]):
        y.addcmul_(w[:, k].view(1, -1, 1, 1), x[:, k:k + 1])
    return y


def _conv1x1_patched(emulator, forward) -> Runner:
    """A copy of the model whose 1×1 convolutions run ``forward``, channels-last like the plugin."""
    import types

    from ai4land_coupler.emulators.unet import MatmulConv1x1

    model = copy.deepcopy(emulator.model)
    for module in model.modules():
        if isinstance(module, MatmulConv1x1):
            module.forward = types.MethodType(forward, module)
    model = model.to(memory_format=torch.channels_last)

    def run(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).contiguous().numpy()
    return run


VARIANTS: dict[str, Callable] = {
    "baseline": _baseline,
    "unfolded": _unfolded,
    "bf16_autocast": _bf16,
    "jit_trace_freeze": _jit_freeze,
    "jit_freeze_optimize_for_inference": _jit_optimize,
    "jit_onednn_graph_fuser": _onednn_graph,
    "mkldnn_disabled": _mkldnn_off,
    "torch_compile": _compiled,
    "fixed_order_1x1": lambda e, x: _conv1x1_patched(e, _fixed_order_1x1),
}


def time_runner(run: Runner, x: np.ndarray, repeats: int, warmup: int = 2) -> tuple[float, np.ndarray]:
    """(the fastest of ``repeats`` calls after ``warmup`` calls, in seconds; the last output)."""
    for _ in range(warmup):
        y = run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = run(x)
        times.append(time.perf_counter() - t0)
    return min(times), np.array(y, copy=True)


# ----------------------------------------------------------------------------- the benchmark


def bench_flops(threads=(2, 1), batch: int = 8, tile: int = 128, repeats: int = 5, variants=None,
                torch_compile: bool = True, emulators=SHIPPED, mm_sizes=MM_SIZES, log=None,
                keep_heap: bool = True) -> list[dict]:
    """Rows: one per thread count with ``kind`` "peak" (torch.mm), one per emulator, thread count
    and variant with ``kind`` "forward". ``variants``: names of :data:`VARIANTS` (default all,
    without torch_compile unless ``torch_compile``). ``keep_heap``: the heap policy the plugin
    sets by default (namelist ``keep_freed_memory``), for the rest of the process."""
    from ai4land_coupler.emulators import load_emulator
    from ai4land_coupler.runtime import keep_freed_memory

    if keep_heap:
        keep_freed_memory()
    names = list(variants or [v for v in VARIANTS if torch_compile or v != "torch_compile"])
    if "baseline" not in names:
        names.insert(0, "baseline")
    log = log or (lambda message: None)
    rows, peak = [], {}
    for t in threads:
        peak[t], n = matmul_peak(t, mm_sizes)
        rows.append({"kind": "peak", "threads": t, "gflops": peak[t], "n": n})
        log(f"torch.mm peak at {t} thread(s): {peak[t]:.1f} GFLOP/s (n={n})")
    for kind, name in emulators:
        emulator = load_emulator(kind, name)
        x = np.random.default_rng(0).standard_normal((batch, emulator.in_channels, tile, tile)).astype(np.float32)
        example = torch.from_numpy(x.copy())
        gflop = count_flops(emulator.model, batch, emulator.in_channels, tile) / 1e9
        outputs: dict[tuple[str, int], np.ndarray] = {}
        base_time: dict[int, float] = {}
        for t in threads:
            with torch_threads(t):
                for variant in names:
                    row = {"kind": "forward", "emulator": name, "variant": variant, "threads": t, "batch": batch,
                           "tile": tile, "gflop": gflop, "seconds": None, "gflops": None, "peak_gflops": peak[t],
                           "ratio_to_peak": None, "speedup": None, "max_abs_diff": None, "max_rel_diff": None,
                           "same_bits_across_threads": None, "setup_s": None, "note": ""}
                    rows.append(row)
                    try:
                        t0 = time.perf_counter()
                        run = VARIANTS[variant](emulator, example)
                        row["setup_s"] = time.perf_counter() - t0
                        seconds, y = time_runner(run, x, repeats)
                    except Exception as exc:  # noqa: BLE001 - a variant that fails is a result
                        row["note"] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                        log(f"{name} {variant} @{t}: {row['note']}")
                        continue
                    outputs[(variant, t)] = y
                    if variant == "baseline":
                        base_time[t] = seconds
                    base = outputs[("baseline", t)]
                    diff = float(np.max(np.abs(y.astype(np.float64) - base)))
                    row.update(seconds=seconds, gflops=gflop / seconds, ratio_to_peak=gflop / seconds / peak[t],
                               speedup=base_time[t] / seconds, max_abs_diff=diff,
                               max_rel_diff=diff / max(float(np.max(np.abs(base))), 1e-30))
                    log(f"{name} {variant} @{t}: {1e3 * seconds:.0f} ms, x{row['speedup']:.2f}, diff {diff:.2e}")
        for row in rows:
            if row["kind"] == "forward" and row["emulator"] == name:
                seen = [outputs[(row["variant"], t)] for t in threads if (row["variant"], t) in outputs]
                if len(seen) == len(threads) > 1:
                    row["same_bits_across_threads"] = all(np.array_equal(seen[0], y) for y in seen[1:])
    return rows


def recommended(rows: list[dict]) -> list[dict]:
    """Forward rows of variants that beat the baseline by :data:`SPEEDUP_GOAL` within :data:`REL_DIFF_LIMIT`."""
    return [r for r in rows if r["kind"] == "forward" and r["variant"] != "baseline" and r["speedup"]
            and r["speedup"] >= SPEEDUP_GOAL and r["max_rel_diff"] < REL_DIFF_LIMIT]


def efficiency(rows: list[dict]) -> list[dict]:
    """Per emulator and thread count, the achieved/peak ratio of the baseline and of the fastest
    variant within :data:`REL_DIFF_LIMIT` of it (forward rows, goal ≥ :data:`RATIO_GOAL`)."""
    out = []
    keys = dict.fromkeys((r["emulator"], r["threads"]) for r in rows if r["kind"] == "forward")
    for emulator, threads in keys:
        ok = [r for r in rows if r["kind"] == "forward" and (r["emulator"], r["threads"]) == (emulator, threads)
              and r["seconds"] is not None and r["max_rel_diff"] < REL_DIFF_LIMIT]
        base = next(r for r in ok if r["variant"] == "baseline")
        out.append(base)
        best = min(ok, key=lambda r: r["seconds"])
        if best is not base:
            out.append(best)
    return out


def _f(value, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return format(value, fmt)


def markdown(rows: list[dict]) -> str:
    peak = [r for r in rows if r["kind"] == "peak"]
    forward = [r for r in rows if r["kind"] == "forward"]
    lines = ["| threads | torch.mm fp32 peak (GFLOP/s) | best n |", "| ---: | ---: | ---: |"]
    lines += [f"| {r['threads']} | {r['gflops']:.1f} | {r['n']} |" for r in peak]
    lines += ["", "| emulator | variant | threads | GFLOP/batch | best (ms) | GFLOP/s | / peak | speed-up | "
              "max abs diff | max rel diff | same bits 1↔2 threads | setup (s) | note |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]
    for r in forward:
        ms = None if r["seconds"] is None else 1e3 * r["seconds"]
        lines.append(f"| {r['emulator']} | {r['variant']} | {r['threads']} | {r['gflop']:.2f} | {_f(ms, '.0f')} | "
                     f"{_f(r['gflops'], '.1f')} | {_f(r['ratio_to_peak'], '.2f')} | {_f(r['speedup'], '.2f')} | "
                     f"{_f(r['max_abs_diff'], '.1e')} | {_f(r['max_rel_diff'], '.1e')} | "
                     f"{_f(r['same_bits_across_threads'], '')} | {_f(r['setup_s'], '.1f')} | {r['note']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile (slow to compile)")
    parser.add_argument("--default-heap", dest="keep_heap", action="store_false",
                        help="leave glibc's heap policy as it is (the plugin with keep_freed_memory = .false.)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    log = None if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    rows = bench_flops(tuple(args.threads), args.batch, args.tile, args.repeats, args.variants, args.compile, log=log,
                       keep_heap=args.keep_heap)
    print(markdown(rows))
    good = recommended(rows)
    if good:
        print("\nFaster than the baseline by ≥ 15 % within 1e-4 relative: "
              + ", ".join(f"{r['emulator']} {r['variant']} @{r['threads']} (x{r['speedup']:.2f})" for r in good))
    return 0


if __name__ == "__main__":
    sys.exit(main())
