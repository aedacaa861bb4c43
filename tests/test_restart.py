"""Exact restart, as CESM tests it: ERS (continuous = restarted) and REP (a run repeats its bits);
ERP (written on N ranks, read on M) is in tests/mpi/test_component_mpi.py. And every refusal."""
import hashlib

import netCDF4
import numpy as np
import pytest

from ai4land_coupler.comm import SerialComm
from ai4land_coupler.component import Component
from ai4land_coupler.errors import CallOrderError, InputFileError
from ai4land_coupler.partition import Box
from conftest import run_lifecycle, write_namelist

NLAT, NLON = 90, 180
FIRST = [(2031, 1, 1, 0), (2031, 7, 1, 0)]
SECOND = [(2032, 1, 1, 0), (2032, 7, 1, 0)]


def hashes(fields: dict) -> dict:
    return {key: hashlib.sha256(values.tobytes()).hexdigest() for key, values in fields.items()}


def run(nml, steps, **restart):
    return hashes(run_lifecycle(SerialComm(), nml, Box(0, 0, NLON, NLAT), steps, NLAT, NLON, **restart))


@pytest.fixture(scope="module")
def nml(world_dir, tmp_path_factory):
    return write_namelist(tmp_path_factory.mktemp("restart") / "ai4land.nml", world_dir)


@pytest.fixture(scope="module")
def continuous(nml):
    return run(nml, FIRST + SECOND)


def test_ers_restarted_run_equals_the_continuous_one(nml, continuous, tmp_path):
    first = run(nml, FIRST, write_restart=tmp_path / "r.nc")
    second = run(nml, SECOND, read_restart=tmp_path / "r.nc")
    assert first == {k: v for k, v in continuous.items() if k[0] in FIRST}
    assert second == {k: v for k, v in continuous.items() if k[0] in SECOND}
    assert len(second) == 4 + 2 and not list(tmp_path.glob(".*tmp*"))  # land use and LAI, then LAI


def test_rep_two_identical_runs_give_identical_bits(nml, continuous):
    assert run(nml, FIRST + SECOND) == continuous


def test_restart_file_holds_the_state_in_global_order(nml, tmp_path):
    run(nml, FIRST, write_restart=tmp_path / "r.nc")
    with netCDF4.Dataset(tmp_path / "r.nc") as ds:
        assert ds.current_date == "2031-07-01T00:00:00" and ds.landuse_started == 1 and ds.calendar == "noleap"
        assert ds["lulc"].shape == (180, 360) and ds["lai"].shape == (180, 360)
        assert ds["host_landuse_fraction"].shape == (8, NLAT * NLON)
        assert len(ds.landuse_emulator_sha256) == 64 and "&ai4land_nml" in ds.namelist
        fractions = ds["host_landuse_fraction"][:]
    np.testing.assert_allclose(fractions.sum(axis=0), 1.0, atol=1e-6)


def _component_after_enddef(nml):
    c = Component()
    c.init(SerialComm(), nml)
    c.def_partition(Box(0, 0, NLON, NLAT))
    c.enddef()
    return c


@pytest.mark.parametrize("change, message", [
    ({"calendar": "'360_day'"}, "calendar = 'noleap', this run has '360_day'"),
    ({"host_nlat": 45, "host_nlon": 90}, "host_cells = '16200', this run has '4050'"),
    ({"lai_cadence": "'ndays'"}, "lai_cadence"),
])
def test_a_restart_of_another_run_is_refused(nml, world_dir, tmp_path, change, message):
    run(nml, FIRST, write_restart=tmp_path / "r.nc")
    other = write_namelist(tmp_path / "other.nml", world_dir, **change)
    c = Component()
    c.init(SerialComm(), other)
    c.def_partition(Box(0, 0, change.get("host_nlon", NLON), change.get("host_nlat", NLAT)))
    c.enddef()
    with pytest.raises(InputFileError, match=message) as err:
        c.read_restart(tmp_path / "r.nc")
    assert str(tmp_path / "r.nc") in str(err.value)


def test_a_restart_of_other_emulator_weights_is_refused(nml, tmp_path):
    run(nml, FIRST, write_restart=tmp_path / "r.nc")
    with netCDF4.Dataset(tmp_path / "r.nc", "a") as ds:
        ds.lai_emulator_sha256 = "0" * 64
    with pytest.raises(InputFileError, match="lai_emulator_sha256"):
        _component_after_enddef(nml).read_restart(tmp_path / "r.nc")


@pytest.mark.parametrize("content", [b"", b"CDF\x01 truncated", b"not netcdf at all"])
def test_a_corrupt_or_missing_restart_is_refused(nml, tmp_path, content):
    (tmp_path / "bad.nc").write_bytes(content)
    c = _component_after_enddef(nml)
    for path in (tmp_path / "bad.nc", tmp_path / "missing.nc"):
        with pytest.raises(InputFileError, match="not a readable restart file"):
            c.read_restart(path)


def test_read_restart_after_a_step_or_before_enddef_is_a_call_order_error(nml, tmp_path):
    run(nml, FIRST[:1], write_restart=tmp_path / "r.nc")
    c = _component_after_enddef(nml)
    c.step(FIRST[0])
    with pytest.raises(CallOrderError, match="before the first step"):
        c.read_restart(tmp_path / "r.nc")
    fresh = Component()
    fresh.init(SerialComm(), nml)
    with pytest.raises(CallOrderError, match="read_restart"):
        fresh.read_restart(tmp_path / "r.nc")


def test_a_failed_write_leaves_the_previous_restart_whole(nml, tmp_path, monkeypatch):
    target = tmp_path / "r.nc"
    run(nml, FIRST[:1], write_restart=target)
    before = target.read_bytes()
    c = _component_after_enddef(nml)
    c.step(FIRST[0])
    c.step(FIRST[1])

    def crash(fd):
        raise OSError("disk full (injected)")

    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(Exception, match="disk full"):
        c.write_restart(target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_ers_with_the_daily_cadence_keeps_the_months_it_interpolates_between(world_dir, tmp_path):
    daily = write_namelist(tmp_path / "daily.nml", world_dir, lai_cadence="'daily'")
    days = [(2031, 1, d, 43200) for d in (1, 20, 31)] + [(2031, 2, d, 43200) for d in (10, 20)]
    continuous = run(daily, days)
    first = run(daily, days[:3], write_restart=tmp_path / "r.nc")
    with netCDF4.Dataset(tmp_path / "r.nc") as ds:
        assert {"lai_2031_01", "lai_2031_02", "host_lai_2031_01", "host_lai_per_class_2031_02"} <= set(ds.variables)
    second = run(daily, days[3:], read_restart=tmp_path / "r.nc")
    assert {**first, **second} == continuous
