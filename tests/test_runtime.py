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

# Allocates and frees 48 MB of arrays 20 times; prints the page faults of those 20 rounds.
FAULTS = """
import resource, sys
import numpy as np
from ai4land_coupler.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a, b = np.ones(3_000_000), np.ones(2_000_000)
del a, b
before = faults()
for _ in range(20):
    a, b = np.ones(3_000_000), np.ones(2_000_000)
    del a
    c = np.ones(1_000_000)
    del b, c
print(faults() - before)
"""
PAGES_PER_ROUND = 6_000_000 * 8 // 4096  # glibc's own policy faults in about a tenth of them


def _faults(policy: str) -> int:
    done = subprocess.run([sys.executable, "-c", FAULTS, policy], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_kept_memory_is_reused_without_page_faults():
    kept = _faults("keep")
    assert kept < 0.0005 * 20 * PAGES_PER_ROUND, f"{kept} page faults in 20 rounds of {PAGES_PER_ROUND} pages"


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
