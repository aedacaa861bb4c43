import re

import pytest

from ai4land_coupler.datasets import FILE_NAMES, REQUIRED_FILES
from ai4land_coupler.errors import NamelistError
from ai4land_coupler.namelist import SCHEMA, read_namelist
from conftest import REPO, write_namelist


def _input_dir(folder):
    """A folder holding (empty) required input files: the namelist checks only that they exist."""
    folder.mkdir(exist_ok=True)
    for key in REQUIRED_FILES:
        (folder / FILE_NAMES[key]).touch()
    return folder


def test_example_namelists_are_valid(tmp_path):
    world = _input_dir(tmp_path / "world")
    nml = (REPO / "namelists" / "ai4land_example.nml").read_text().replace("'../data/world'", f"'{world}'")
    (tmp_path / "example.nml").write_text(nml)
    cfg = read_namelist(tmp_path / "example.nml")
    assert (cfg.host_nlat, cfg.host_nlon, cfg.lai_cadence, cfg.tile_size) == (90, 180, "monthly", 128)


def test_the_example_namelist_shows_every_key_at_its_default(tmp_path):
    """namelists/ai4land_example.nml says it holds every key at its default (region commented out)."""
    world = _input_dir(tmp_path / "world")
    text = (REPO / "namelists" / "ai4land_example.nml").read_text()
    listed = set(re.findall(r"^\s*!?\s*(\w+)\s*=", text, re.M))
    assert set(SCHEMA) - listed == set()
    (tmp_path / "example.nml").write_text(text.replace("'../data/world'", f"'{world}'"))
    cfg = read_namelist(tmp_path / "example.nml")
    resolved = {"host_nlat", "host_nlon", "input_dir"} | {k for k in SCHEMA if k.endswith("_file") and k != "host_weights_file"}
    defaults = set(SCHEMA) - resolved  # the file keys resolve to paths in input_dir
    assert [k for k in defaults if getattr(cfg, k) != SCHEMA[k].default] == []


def test_defaults_and_relative_paths(tmp_path):
    _input_dir(tmp_path / "w")
    path = tmp_path / "a.nml"
    path.write_text("&other_group\n x = 1\n/\n&ai4land_nml\n host_nlat = 45\n host_nlon = 90\n input_dir = 'w'\n/\n")
    cfg = read_namelist(path)
    assert cfg.input_dir == str((tmp_path / "w").resolve())
    assert cfg.do_dynamic_landuse is True and cfg.device == "auto" and cfg.tile_overlap == 0.5


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"do_dynamic_landuze": ".true."}, "unknown key 'do_dynamic_landuze'"),
        ({"host_nlat": "'ninety'"}, "key 'host_nlat' must be int"),
        ({"host_nlat": "0"}, "key 'host_nlat' = 0 is below the minimum 1"),
        ({"tile_overlap": "0.95"}, "key 'tile_overlap' = 0.95 is above the maximum 0.9"),
        ({"lai_cadence": "'weekly'"}, "key 'lai_cadence' = 'weekly' is not one of monthly, ndays"),
        ({"do_dynamic_lai": "3"}, "key 'do_dynamic_lai' must be bool"),
        ({"input_dir": "'/nonexistent/world'"}, "key 'input_dir': folder /nonexistent/world does not exist"),
        ({"landuse_emulator": "'weights/missing.safetensors'"}, "key 'landuse_emulator': file"),
        ({"tile_size": "60"}, "key 'tile_size' = 60 must be a multiple of 8"),
        ({"crosswalk": "'jsbach'"}, "key 'crosswalk' = 'jsbach' is not one of none, ecland, clm"),
        ({"host_weights_file": "'mesh.nc'"}, "key 'host_weights_file': file"),
        ({"region": "10.0, 5.0, 0.0, 20.0"}, "key 'region'"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path, extra, message):
    path = write_namelist(tmp_path / "bad.nml", _input_dir(tmp_path), **extra)
    with pytest.raises(NamelistError) as err:
        read_namelist(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_required_key_missing_group_missing_file_empty_file(tmp_path):
    p = tmp_path / "x.nml"
    p.write_text(f"&ai4land_nml\n host_nlat = 4\n input_dir = '{tmp_path}'\n/\n")
    with pytest.raises(NamelistError, match="key 'host_nlon' is required"):
        read_namelist(p)
    p.write_text("&mock_host_nml\n nlat = 4\n/\n")
    with pytest.raises(NamelistError, match=r"group &ai4land_nml not found \(found &mock_host_nml\)"):
        read_namelist(p)
    p.write_text("")
    with pytest.raises(NamelistError, match="not found"):
        read_namelist(p)
    with pytest.raises(NamelistError, match="does not exist"):
        read_namelist(tmp_path / "nope.nml")


def test_demo_namelist_holds_valid_host_and_plugin_groups(tmp_path, world_dir):
    from ai4land_coupler.mockhost import read_host_namelist

    text = (REPO / "namelists" / "demo.nml").read_text().replace("'../../data/world'", f"'{world_dir}'")
    (tmp_path / "demo.nml").write_text(text)
    cfg = read_namelist(tmp_path / "demo.nml")
    host = read_host_namelist(str(tmp_path / "demo.nml"))
    assert (cfg.host_nlat, cfg.host_nlon) == (host.nlat, host.nlon) == (90, 180)
    assert host.nyears >= 3 and host.step_frequency == "monthly" and cfg.lai_cadence == "monthly"


def test_a_weights_file_replaces_the_lat_lon_host_grid(tmp_path):
    (tmp_path / "mesh.nc").touch()
    p = tmp_path / "u.nml"
    p.write_text(f"&ai4land_nml\n input_dir = '{_input_dir(tmp_path)}'\n host_weights_file = 'mesh.nc'\n/\n")
    cfg = read_namelist(p)
    assert cfg.host_weights_file == str(tmp_path / "mesh.nc") and cfg.host_nlat == 0
