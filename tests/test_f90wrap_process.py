"""The f90wrap tests of the Fortran layer (test_f90wrap.py), in an interpreter of their own."""
import os
import subprocess
import sys
from pathlib import Path


def test_fortran_layer_argument_by_argument_through_f90wrap():
    here = Path(__file__).resolve().parent
    env = {**os.environ, "AI4LAND_F90WRAP_PROCESS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--color=no", "-p", "no:cacheprovider",
                           str(here / "test_f90wrap.py")], cwd=here.parent, env=env, capture_output=True, text=True,
                          timeout=900)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
