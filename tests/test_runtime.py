"""The per-rank runtime settings of the namelist: the heap policy (keep_freed_memory) and the precision."""
import ctypes
import ctypes.util
import subprocess
import sys

import pytest

from ai4land_coupler import component
from ai4land_coupler.component import Component
from conftest import write_namelist

GLIBC = hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "gnu_get_libc_version")

# Allocates ten 8 MB arrays and frees them, 20 times; prints the page faults of those 20 rounds.
# glibc's own policy hands the 80 MB back to the system after each round (it is above its trim
# threshold), so every round faults it in again; the kept heap reuses it.
FAULTS = """
import resource, sys
import numpy as np
from ai4land_coupler.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def allocate_and_free():
    arrays = [np.ones(1_000_000) for _ in range(10)]
    del arrays
allocate_and_free()
before = faults()
for _ in range(20):
    allocate_and_free()
print(faults() - before)
"""
PAGES_TOUCHED = 20 * 10 * 8_000_000 // 4096


def _faults(policy: str) -> int:
    done = subprocess.run([sys.executable, "-c", FAULTS, policy], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    kept = _faults("keep")
    # glibc's own policy faults in about a quarter of the pages here; background page migration
    # (THP compaction) can add a few hundred faults on a busy machine.
    assert kept < 0.01 * PAGES_TOUCHED, f"{kept} page faults, {_faults('default')} without the kept heap"


@pytest.mark.parametrize("keep", [True, False])
def test_component_sets_the_heap_policy_only_when_asked(world_dir, tmp_path, monkeypatch, keep):
    calls = []
    monkeypatch.setattr(component, "keep_freed_memory", lambda: calls.append(1) or True)
    nml = write_namelist(tmp_path / "a.nml", world_dir, keep_freed_memory=".true." if keep else ".false.",
                         do_dynamic_lai=".false.", do_dynamic_landuse=".false.")
    c = Component()
    c.init(None, nml)
    assert calls == ([1] if keep else [])
    assert c.config.keep_freed_memory is keep
    c.finalize()


def test_the_namelist_precision_reaches_both_emulators(world_dir, tmp_path):
    nml = write_namelist(tmp_path / "a.nml", world_dir, precision="'bf16'")
    c = Component()
    c.init(None, nml)
    assert c.landuse_emulator.precision == c.lai_emulator.precision == "bf16"
    c.finalize()
