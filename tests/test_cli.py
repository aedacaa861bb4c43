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


def test_emulators_lists_the_registry_with_its_skill():
    r = ai4land("emulators")
    assert r.returncode == 0, r.stderr
    assert "landuse_unet_v1 (landuse):" in r.stdout and "FiLM on bio01, bio04, bio12, bio15" in r.stdout
    assert "lai_unet_v1 (lai):" in r.stdout and "held-out region in the held-out years: RMSE" in r.stdout


def test_plot_draws_the_maps_of_a_run(world_dir, tmp_path):
    from ai4land_coupler.partition import Box
    from conftest import run_lifecycle

    nml = write_namelist(tmp_path / "a.nml", world_dir, output_dir="'hist'", do_dynamic_lai=".false.")
    run_lifecycle(None, nml, Box(0, 0, 180, 90), [(2031, 1, 1, 0)])
    r = ai4land("plot", str(tmp_path / "hist" / "ai4land_fine_history.nc"), "--out", str(tmp_path / "maps"))
    assert r.returncode == 0, r.stderr
    for name in ("landuse_fine_grid.png", "landuse_uncertainty.png"):
        png = tmp_path / "maps" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
