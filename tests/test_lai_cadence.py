"""LAI cadences through the component: monthly, every N days, and daily between monthly values."""
import numpy as np
import pytest

from ai4land_coupler.comm import SerialComm
from ai4land_coupler.component import Component
from ai4land_coupler.partition import Box
from conftest import write_namelist

NLAT, NLON = 90, 180


def host_lai(nml, steps):
    """{step: (changed flags, host LAI)} for a run through ``steps``."""
    c = Component()
    c.init(SerialComm(), nml)
    c.def_partition(Box(0, 0, NLON, NLAT))
    c.enddef()
    out = {}
    for when in steps:
        changed = c.step(when)
        lai = np.zeros(c.local_size)
        c.get("lai", lai)
        out[when] = ("lai" in changed, lai)
    c.finalize()
    return out


@pytest.fixture(scope="module")
def monthly(world_dir, tmp_path_factory):
    nml = write_namelist(tmp_path_factory.mktemp("monthly") / "m.nml", world_dir)
    return host_lai(nml, [(2031, 1, 1, 0), (2031, 2, 1, 0)])


def test_daily_lai_interpolates_between_the_monthly_values(world_dir, tmp_path, monthly):
    nml = write_namelist(tmp_path / "d.nml", world_dir, lai_cadence="'daily'")
    days = [(2031, 1, d, 43200) for d in range(1, 32)] + [(2031, 2, d, 43200) for d in range(1, 16)]
    daily = host_lai(nml, days)
    assert all(changed for changed, _ in daily.values())
    january, february = monthly[(2031, 1, 1, 0)][1], monthly[(2031, 2, 1, 0)][1]
    assert np.array_equal(daily[(2031, 1, 16, 43200)][1], january)  # the middle of January: its emulated value
    mid_way = daily[(2031, 2, 1, 43200)][1]  # 16 of the 29.5 days from the middle of January to that of February
    np.testing.assert_allclose(mid_way, january + (16 / 29.5) * (february - january), rtol=1e-12, atol=1e-12)
    land = january > 0
    steps = np.array([daily[d][1][land] for d in days[15:]])  # 16 January onwards: towards February, then March
    assert np.all(np.abs(np.diff(steps[:16], axis=0)) <= np.abs(february - january)[land] / 29.5 * (1 + 1e-9) + 1e-12)


def test_ndays_cadence_changes_lai_every_n_days(world_dir, tmp_path):
    nml = write_namelist(tmp_path / "n.nml", world_dir, lai_cadence="'ndays'", lai_interval_days=10)
    out = host_lai(nml, [(2031, 1, d, 0) for d in (1, 5, 11, 20, 21)])
    assert [out[(2031, 1, d, 0)][0] for d in (1, 5, 11, 20, 21)] == [True, False, True, False, True]
    assert not np.array_equal(out[(2031, 1, 1, 0)][1], out[(2031, 1, 11, 0)][1])
