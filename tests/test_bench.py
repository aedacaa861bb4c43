"""Smoke tests of the benchmarks (bench/): the FLOP count, the bridge bench's parser and its
address comparison (on a captured sample), one short run of the Fortran bridge bench, and the
step bench's accounting."""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import bench_bridge  # noqa: E402

# Captured from `python bench/bench_bridge.py` (bench/bridge_latency.F90 on 1 rank), shortened.
SAMPLE_OUTPUT = """\
ai4land_bench op=put what=probe host=contiguous name=probe_large_contiguous n=1000000 fortran_address=140611256684560 first=  4.2420000000000000E+03 last= -4.2420000000000000E+03
ai4land_bench op=get what=probe host=contiguous name=probe_large_contiguous n=1000000 fortran_address=140611256684560 first=  1.0010000000000000E+03 last= -1.0010000000000000E+03
ai4land_bench op=put what=probe host=assumed_shape name=probe_large_assumed_shape n=1000000 fortran_address=140611256684560 first=  4.2420000000000000E+03 last= -4.2420000000000000E+03
ai4land_bench op=get what=probe host=assumed_shape name=probe_large_assumed_shape n=1000000 fortran_address=140611256684560 first=  1.0030000000000000E+03 last= -1.0030000000000000E+03
ai4land_bench what=empty_call call=ai4land_local_size calls=200000 seconds= 2.47639E-01 us_per_call=1.2382
ai4land_bench what=put host=contiguous n=1000000 calls=20000 seconds= 8.25736E-02 us_per_call=4.1287
ai4land_bench what=get host=assumed_shape n=1000000 calls=198 seconds= 3.12540E-01 us_per_call=1578.4850
ai4land_bench what=fortran_copy n=1000000 calls=200 seconds= 1.63273E-01 us_per_call=816.3645
something else on stdout
ai4land_bench what=done checksum= 0.00000E+00
"""


def record(op, name, address, first, last):
    return {"op": op, "name": name, "address": address, "nbytes": 8_000_000, "dtype": "float64", "owndata": False,
            "writeable": op == "get", "base_type": "buffer", "shares_memory_with_base": True,
            "first": first, "last": last}


SAMPLE_RECORDS = [
    record("put", "probe_large_contiguous", 140611256684560, 4242.0, -4242.0),
    record("get", "probe_large_contiguous", 140611256684560, 1001.0, -1001.0),
    record("put", "probe_large_assumed_shape", 140610557653008, 4242.0, -4242.0),  # a packed copy
    record("get", "probe_large_assumed_shape", 94416410549632, 1003.0, -1003.0),
]


def test_parser_reads_timings_and_probes():
    timings, probes = bench_bridge.parse_output(SAMPLE_OUTPUT)
    assert [t["what"] for t in timings] == ["empty_call", "put", "get", "fortran_copy"]
    assert timings[0] == {"what": "empty_call", "call": "ai4land_local_size", "calls": 200000,
                          "seconds": pytest.approx(0.247639), "us_per_call": pytest.approx(1.2382)}
    assert len(probes) == 4
    assert probes[0]["fortran_address"] == 140611256684560 and probes[0]["n"] == 1000000
    assert probes[0]["first"] == 4242.0 and probes[0]["last"] == -4242.0  # "first=  4.24E+03": spaces after '='


def test_comparison_accepts_equal_addresses_and_rejects_copies():
    _, probes = bench_bridge.parse_output(SAMPLE_OUTPUT)
    result = bench_bridge.compare_addresses(probes, SAMPLE_RECORDS)
    assert result["contiguous"]["copies"] == "0" and result["contiguous"]["problems"] == []
    assert result["assumed_shape"]["copies"] == ">=1"
    assert len(result["assumed_shape"]["problems"]) == 2
    assert "address" in result["assumed_shape"]["problems"][0]

    timings, _ = bench_bridge.parse_output(SAMPLE_OUTPUT)
    rows = bench_bridge.rows_from(timings, result)
    copies = {r["case"]: r for r in rows if r["case"].startswith("copies")}
    assert copies["copies (contiguous host array)"]["met"] is True
    assert copies["copies (assumed_shape host array)"]["met"] is False
    empty = next(r for r in rows if r["case"].startswith("empty call"))
    assert empty["met"] is True and empty["value"] == pytest.approx(1.2382)
    assert "| **no** |" in bench_bridge.markdown(rows)


@pytest.mark.parametrize("field, value", [("address", 140611256684568), ("first", 4243.0), ("owndata", True),
                                          ("writeable", True), ("nbytes", 8)])
def test_comparison_rejects_any_mismatch_of_the_put(field, value):
    _, probes = bench_bridge.parse_output(SAMPLE_OUTPUT)
    records = copy.deepcopy(SAMPLE_RECORDS)
    records[0][field] = value
    assert bench_bridge.compare_addresses(probes, records)["contiguous"]["copies"] == ">=1"


def test_comparison_rejects_missing_records_and_missing_gets():
    _, probes = bench_bridge.parse_output(SAMPLE_OUTPUT)
    assert bench_bridge.compare_addresses(probes, SAMPLE_RECORDS[:1])["contiguous"]["copies"] == ">=1"
    puts_only = [p for p in probes if p["op"] == "put"]
    result = bench_bridge.compare_addresses(puts_only, SAMPLE_RECORDS)
    assert result["contiguous"]["copies"] == ">=1" and "need put and get" in result["contiguous"]["problems"][0]


@pytest.fixture(scope="module")
def landuse():
    from ai4land_coupler.emulators import load_emulator

    return load_emulator("landuse", "landuse_unet_v1")


def test_flop_count_is_positive_and_linear_in_the_batch(landuse):
    import bench_flops

    one = bench_flops.count_flops(landuse.model, 1, landuse.in_channels, tile=64)
    two = bench_flops.count_flops(landuse.model, 2, landuse.in_channels, tile=64)
    assert one > 0
    assert two == 2 * one


def test_the_old_fixed_order_1x1_sums_agree_with_the_matrix_product_to_rounding(landuse):
    import numpy as np

    import bench_flops

    x = np.random.default_rng(1).standard_normal((2, landuse.in_channels, 64, 64)).astype(np.float32)
    fixed = bench_flops._conv1x1_patched(landuse, bench_flops._fixed_order_1x1)(x)
    plugin = landuse.predict_batch(x)
    assert np.abs(fixed - plugin).max() <= 1e-5 * np.abs(plugin).max()
    assert not np.array_equal(fixed, plugin)  # the product sums in another order


@pytest.mark.skipif(not bench_bridge.EXE.exists(), reason=f"{bench_bridge.EXE} not built (cmake --build build)")
def test_fortran_bridge_bench_runs_and_the_contiguous_path_copies_nothing():
    t0 = time.perf_counter()
    stdout, records = bench_bridge.run_fortran(ncalls=2000, nvalues=1000, nputs=200, timeout=120)
    timings, probes = bench_bridge.parse_output(stdout)
    copies = bench_bridge.compare_addresses(probes, records)
    assert copies["contiguous"]["copies"] == "0", copies["contiguous"]["problems"]
    assert {t["what"] for t in timings} == {"empty_call", "put", "get", "fortran_copy"}
    assert all(t["us_per_call"] > 0 for t in timings)
    assert time.perf_counter() - t0 < 60


def test_step_bench_accounts_for_the_whole_step_and_unwraps_its_timers():
    import bench_step

    from ai4land_coupler.component import Component
    from ai4land_coupler.inference import with_halo

    rows = {r["emulator"]: r for r in bench_step.measure(threads=1, repeats=1)}
    assert set(rows) == {"landuse", "lai"}
    for r in rows.values():
        stages = r["stages"]
        assert abs(sum(stages.values()) - r["stages_step_s"]) < 1e-9  # "other" closes the account
        assert 0 < r["network_s"] == stages["network (the plugin's)"] < r["step_s"]
        assert r["network_ratio"] == pytest.approx(r["step_s"] / r["network_s"])
        assert r["ratio"] == pytest.approx(r["step_s"] / r["bare_s"]) and r["bare_s"] > 0
        assert stages["tiles: weighted sums"] > 0 and stages["host-cell means"] > 0
    cells = "cells: softmax, projection, allocation, entropy"
    assert rows["landuse"]["stages"][cells] > 0 == rows["lai"]["stages"][cells]
    assert rows["lai"]["stages"]["softplus"] > 0 == rows["landuse"]["stages"]["softplus"]
    assert rows["lai"]["stages"]["drivers read"] > 0 == rows["landuse"]["stages"]["drivers read"]
    import ai4land_coupler.inference as inference
    from ai4land_coupler.emulators.checkpoint import Emulator
    assert inference.with_halo is with_halo and "wrapper" not in Component._means.__qualname__
    assert Emulator.predict_batch.__code__.co_name == "predict_batch"


def test_the_bare_forward_is_timed_on_the_plugins_batches_and_must_match_its_output():
    import bench_step

    from ai4land_coupler.emulators import load_emulator

    emulator = load_emulator("lai", "lai_unet_v1")
    x = np.random.default_rng(0).normal(size=(2, emulator.in_channels, 64, 64)).astype(np.float32)
    batches = []
    with bench_step._recorded_batches(batches):
        out = emulator.predict_batch(x)
    assert len(batches) == 1 and batches[0][1] is x and batches[0][2] is out
    assert bench_step.bare_forward(batches) > 0
    batches[0] = (emulator, x, out + 1e-3 * max(np.abs(out).max(), 1.0))
    with pytest.raises(RuntimeError, match="differs from the plugin's"):
        bench_step.bare_forward(batches)


def test_precision_bench_reports_a_small_but_real_change_of_the_coupled_outputs(world_dir):
    import bench_precision

    r = bench_precision.measure(year=2031, threads=2, world=world_dir)
    assert 0 < r["fraction_mean"] < 1e-3 and r["fraction_p99"] < 1e-2  # class fractions
    assert 0 < r["map_changed"] < 0.01  # share of land pixels whose class changes
    assert 0 < r["fine_lai_mean"] < 0.05 * r["lai_mean"]
    assert all(t > 0 for t in (*r["landuse_step_s"], *r["lai_step_s"]))
    assert "| landuse |" in bench_precision.table(r) and "| lai |" in bench_precision.table(r)


@pytest.mark.parametrize("method", ["gathered tables", "directory"])
def test_the_directory_bench_checks_both_methods_on_thread_ranks(method):
    import bench_directory

    from ai4land_coupler.comm import run_threads

    results = run_threads(3, lambda comm: bench_directory.run(comm, method, 1000))
    assert all(seconds >= 0 for seconds, _ in results)
    assert bench_directory.table([{"ranks": 3, "cells": 1000, "method": method, "seconds": 0.5, "memory_mb": 12.0}]) \
        .endswith(f"| 3 | 1,000 | {method} | 0.50 | 12 |")
