import subprocess
import sys

from ai4land_coupler.datasets import FILE_NAMES, REQUIRED_FILES
from conftest import REPO, write_namelist


def ai4land(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ai4land_coupler.cli", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_generated_headers_and_docs_are_up_to_date():
    r = ai4land("codegen", "--check", "--root", str(REPO))
    assert r.returncode == 0, r.stderr


def test_check_namelist_reports_a_typo_with_key_and_file(tmp_path):
    path = write_namelist(tmp_path / "typo.nml", tmp_path, do_dynamic_landus=".true.")
    r = ai4land("check-namelist", str(path))
    assert r.returncode == 2
    assert f"{path}: &ai4land_nml has unknown key 'do_dynamic_landus'" in r.stderr
    for key in REQUIRED_FILES:  # the namelist checks only that its input files exist
        (tmp_path / FILE_NAMES[key]).touch()
    good = write_namelist(tmp_path / "good.nml", tmp_path)
    r = ai4land("check-namelist", str(good))
    assert r.returncode == 0 and "host_nlat = 90" in r.stdout
