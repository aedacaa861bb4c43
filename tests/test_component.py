"""The Python component end to end on the default world (serial)."""
import re

import numpy as np
import pytest

from ai4land_coupler import cells
from ai4land_coupler.comm import SerialComm
from ai4land_coupler.component import Component
from ai4land_coupler.errors import ArgumentError, CallOrderError, ClockError, EmulatorError
from ai4land_coupler.partition import Box, Points
from conftest import run_lifecycle, write_namelist

NLAT, NLON = 90, 180


def run_component(namelist, partition, steps, drivers=None):
    return run_lifecycle(None, namelist, partition, steps, NLAT, NLON, drivers)


STEPS = [(2031, 1, 1, 0), (2031, 1, 16, 0), (2031, 7, 1, 0)]


@pytest.fixture(scope="module")
def box_run(world_dir, tmp_path_factory):
    nml = write_namelist(tmp_path_factory.mktemp("c") / "a.nml", world_dir)
    return run_component(nml, Box(0, 0, NLON, NLAT), STEPS)


def test_fields_are_physical(box_run):
    assert set(box_run) == {(STEPS[0], "landuse_fraction"), (STEPS[0], "landuse_uncertainty"), (STEPS[0], "lai"),
                            (STEPS[0], "lai_per_class"), (STEPS[2], "lai"), (STEPS[2], "lai_per_class")}
    frac = box_run[(STEPS[0], "landuse_fraction")]
    uncertainty = box_run[(STEPS[0], "landuse_uncertainty")][0]
    assert uncertainty.min() >= 0.0 and uncertainty.max() <= 1.0
    assert np.all(uncertainty[frac[0] == 1.0] == 0.0)  # all-ocean cells
    assert 0.0 < np.median(uncertainty[frac[0] < 0.5]) < 0.5  # land: mostly confident, never certain
    assert frac.shape == (8, NLAT * NLON) and not np.isnan(frac).any()
    assert frac.min() >= 0.0 and frac.max() <= 1.0
    np.testing.assert_allclose(frac.sum(axis=0), 1.0, atol=1e-12)
    assert 0.15 < 1.0 - frac[0].mean() < 0.6  # land share
    for when in (STEPS[0], STEPS[2]):
        lai = box_run[(when, "lai")]
        assert lai.min() >= 0.0 and np.isfinite(lai).all()
    jan, jul = box_run[(STEPS[0], "lai")][0].reshape(NLAT, NLON), box_run[(STEPS[2], "lai")][0].reshape(NLAT, NLON)
    north = slice(NLAT // 2 + 15, NLAT - 10)  # 30N-70N: summer LAI above winter LAI
    assert jul[north].mean() > 1.2 * jan[north].mean()


def test_shuffled_points_partition_gives_identical_bits(box_run, world_dir, tmp_path):
    nml = write_namelist(tmp_path / "a.nml", world_dir)
    cells = np.random.default_rng(3).permutation(NLAT * NLON)
    points = run_component(nml, Points(cells), STEPS)
    assert points.keys() == box_run.keys()
    for key in box_run:
        assert np.array_equal(points[key], box_run[key]), key


def test_host_drivers_change_lai(box_run, world_dir, tmp_path):
    from ai4land_coupler.mockhost import host_climate

    nml = write_namelist(tmp_path / "a.nml", world_dir)
    lat = np.repeat(-90 + 2.0 * (np.arange(NLAT) + 0.5), NLON)
    run = run_component(nml, Box(0, 0, NLON, NLAT), STEPS[:1], drivers=lambda cells: host_climate(lat[cells], 2031, 1))
    lai, ref = run[(STEPS[0], "lai")], box_run[(STEPS[0], "lai")]
    assert lai.min() >= 0 and not np.array_equal(lai, ref)
    assert np.array_equal(run[(STEPS[0], "landuse_fraction")], box_run[(STEPS[0], "landuse_fraction")])


def test_call_order_and_argument_errors(world_dir, tmp_path):
    nml = write_namelist(tmp_path / "a.nml", world_dir, do_dynamic_lai=".false.")
    c = Component()
    with pytest.raises(CallOrderError, match=r"step\(\) called in state 'new'"):
        c.step((2031, 1, 1))
    c.init(None, nml)
    with pytest.raises(CallOrderError, match=r"init\(\) called in state 'initialised'"):
        c.init(None, nml)
    c.def_partition(Box(0, 0, NLON, NLAT))
    with pytest.raises(CallOrderError, match="in state 'partitioned'; it needs state running"):
        c.step((2031, 1, 1))
    c.enddef()
    out = np.zeros((8, c.local_size))
    with pytest.raises(CallOrderError, match="before any step"):
        c.get("landuse_fraction", out)
    with pytest.raises(ArgumentError, match="unknown field 'lia'"):
        c.get("lia", out)
    with pytest.raises(ArgumentError, match="has 10 values, expected 16200"):
        c.put("tas", np.zeros(10))
    with pytest.raises(ArgumentError, match="1 values are NaN or Inf"):
        bad = np.full(c.local_size, 280.0)
        bad[5] = np.nan
        c.put("tas", bad)
    with pytest.raises(ArgumentError, match="float32 or float64"):
        c.put("tas", np.zeros(c.local_size, dtype=np.int32))
    with pytest.raises(ArgumentError, match=r"put\(\) failed: field 'tas': array has 10 values"):
        c.step((2031, 1, 1))  # a failed put fails the next collective call (on every rank), once
    assert c.step((2031, 1, 1)) == {"landuse_fraction", "landuse_uncertainty"}
    with pytest.raises(ClockError, match="backwards"):
        c.step((2030, 12, 31))
    c.finalize()
    with pytest.raises(CallOrderError, match="finalised"):
        c.step((2031, 2, 1))


def test_coupled_land_use_conserves_the_scenario_on_its_own_grid(world_dir, tmp_path):
    """On a host grid equal to the scenario (LUH2) grid, the host's class fractions summed through the
    crosswalk equal the scenario's groups in every cell and group to 1e-6."""
    from ai4land_coupler.datasets import GROUP_OF_CLASS, SCENARIO_GROUPS, WorldData
    from ai4land_coupler.emulators import LANDUSE_CLASSES

    with WorldData.open(world_dir) as world:
        nlat, nlon = world.coarse_grid.shape
        scenario = world.scenario_groups(2031).astype(np.float64).reshape(len(SCENARIO_GROUPS), -1)
    nml = write_namelist(tmp_path / "a.nml", world_dir, host_nlat=nlat, host_nlon=nlon, do_dynamic_lai=".false.")
    frac = run_lifecycle(None, nml, Box(0, 0, nlon, nlat), STEPS[:1], nlat, nlon)[(STEPS[0], "landuse_fraction")]
    codes = [code for code, _ in LANDUSE_CLASSES]
    for g in range(len(SCENARIO_GROUPS)):
        levels = [codes.index(c) for c, group in GROUP_OF_CLASS.items() if group == g]
        error = np.abs(frac[levels].sum(axis=0) - scenario[g])
        assert error.max() < 1e-6, (SCENARIO_GROUPS[g], error.max())
    assert frac[1:].sum(axis=0).max() > 0.99  # not vacuous: whole land cells are there


def test_a_regional_subset_runs_and_matches_the_global_run_far_from_its_edges(world_dir, tmp_path, box_run):
    """`region` in the namelist: the plugin reads only that box and couples a host grid over it."""
    nml = write_namelist(tmp_path / "a.nml", world_dir, host_nlat=20, host_nlon=30, region="34.0, 72.0, -12.0, 45.0",
                         do_dynamic_lai=".false.")
    c = Component()
    c.init(None, nml)
    assert (c.fine_grid.nlat, c.fine_grid.nlon, c.fine_grid.lat0, c.fine_grid.lon0) == (40, 60, 34.0, -12.0)
    assert not c.fine_grid.is_global
    c.finalize()
    run = run_lifecycle(None, nml, Box(0, 0, 30, 20), STEPS[:1], 20, 30)
    frac = run[(STEPS[0], "landuse_fraction")]
    assert np.isfinite(frac).all() and frac.min() >= 0.0
    np.testing.assert_allclose(frac.sum(axis=0), 1.0, atol=1e-12)
    # The same host cells of the global 2-degree run: identical land-sea split, similar land use.
    rows, cols = np.arange(62, 82), np.arange(84, 114)  # 34N..74N, 12W..48E (snapped) on the 90x180 grid
    global_frac = box_run[(STEPS[0], "landuse_fraction")].reshape(8, 90, 180)[:, rows][:, :, cols].reshape(8, -1)
    np.testing.assert_allclose(frac[0], global_frac[0], atol=1e-12)
    assert np.abs(frac - global_frac).mean() < 0.02


@pytest.mark.parametrize("crosswalk", ["ecland", "clm"])
def test_crosswalk_fields_follow_the_class_fractions(box_run, world_dir, tmp_path, crosswalk):
    """ECLand cvh/cvl and lai_hv/lai_lv, CLM pct_pft: consistent with the class fractions and LAI the host gets."""
    from ai4land_coupler.crosswalks import CLM_TYPES

    nml = write_namelist(tmp_path / "a.nml", world_dir, crosswalk=f"'{crosswalk}'")
    run = run_component(nml, Box(0, 0, NLON, NLAT), STEPS[:1])
    frac = run[(STEPS[0], "landuse_fraction")]
    np.testing.assert_array_equal(frac, box_run[(STEPS[0], "landuse_fraction")])
    per_class = run[(STEPS[0], "lai_per_class")]
    land = frac[0] < 1.0
    assert per_class.shape == (8, NLAT * NLON) and per_class.min() >= 0.0 and np.all(per_class[0] == 0.0)
    if crosswalk == "ecland":
        cvh, cvl = run[(STEPS[0], "cvh")][0], run[(STEPS[0], "cvl")][0]
        np.testing.assert_allclose(cvh, frac[4], atol=1e-12)  # forest
        np.testing.assert_allclose(cvl, 0.2 * frac[1] + frac[2] + frac[3] + frac[5] + 0.3 * frac[6], atol=1e-12)
        assert np.all(cvh + cvl <= 1.0 + 1e-12)
        lai_hv, lai_lv = run[(STEPS[0], "lai_hv")][0], run[(STEPS[0], "lai_lv")][0]
        assert np.all(lai_hv[cvh == 0] == 0.0) and lai_hv.max() > lai_lv.max() > 0.0
        forest_cells = per_class[4] > 0
        np.testing.assert_allclose(lai_hv[forest_cells], per_class[4][forest_cells], rtol=1e-9)
    else:
        pct = run[(STEPS[0], "pct_pft")]
        assert pct.shape == (len(CLM_TYPES), NLAT * NLON) and pct.min() >= 0.0
        np.testing.assert_allclose(pct[:, land].sum(axis=0), 100.0, atol=1e-9)
        assert np.all(pct[:, ~land] == 0.0)
        trees = pct[1:4].sum(axis=0)
        np.testing.assert_allclose(trees[land], 100 * frac[4][land] / (1 - frac[0][land]), atol=1e-9)
        assert pct[1].max() > 0 and pct[3].max() > 0  # boreal and tropical forests both occur


def test_landuse_prefetch_gives_the_same_bits_and_runs_in_the_background(world_dir, tmp_path, capfd):
    import hashlib

    from ai4land_coupler.comm import SerialComm
    from ai4land_coupler.component import Component
    from ai4land_coupler.partition import Box

    steps = [(2031, 1, 1, 0), (2031, 6, 1, 0), (2032, 1, 1, 0), (2032, 2, 1, 0), (2033, 1, 1, 0), (2033, 3, 1, 0)]

    def run(prefetch: bool):
        nml = write_namelist(tmp_path / f"p{prefetch}.nml", world_dir, prefetch_landuse=".true." if prefetch else ".false.",
                             do_dynamic_lai=".false.")
        c = Component()
        c.init(SerialComm(), nml)
        c.def_partition(Box(0, 0, 180, 90))
        c.enddef()
        digests, stages = [], []
        for when in steps:
            c.step(when)
            out = np.zeros((8, c.local_size))
            c.get("landuse_fraction", out)
            digests.append(hashlib.sha256(out.tobytes()).hexdigest())
            stages.append((c._prefetch.year, c._prefetch.stage) if c._prefetch else None)
        timings = dict(c.timings)
        c.finalize()
        return digests, stages, timings

    def logged_waits():
        return re.findall(r"year (\d+): the host waited ([\d.]+) s for its land use \(([\w ]+)\)", capfd.readouterr().err)

    capfd.readouterr()
    on, stages, timings = run(True)
    waits_on = logged_waits()
    off, none, plain = run(False)
    waits_off = logged_waits()
    assert [(y, how) for y, _, how in waits_on] == [("2031", "computed at the year boundary"),
                                                   ("2032", "prefetched in the background"),
                                                   ("2033", "prefetched in the background")]
    assert [(y, how) for y, _, how in waits_off] == [(y, "computed at the year boundary") for y in ("2031", "2032", "2033")]
    assert sum(float(w) for _, w, _ in waits_on) == pytest.approx(timings["landuse"], rel=0.01, abs=0.003)
    assert on == off and len(set(on)) == 3  # three years, three different maps
    # The first boundary starts 2032 at once (no step within a year seen yet); later boundaries
    # leave the start of next year's to the next step.
    assert stages[0] == (2032, "sums") and stages[1][0] == 2032  # its network may have ended by 2031-06
    assert stages[2] is None and stages[3] == (2033, "sums")
    assert stages[4] is None and stages[5] == (2034, "sums")
    assert none == [None] * len(steps)
    assert timings["landuse_background"] > 0 and "landuse_background" not in plain


def test_a_step_whose_land_use_breaks_the_scenario_stops(world_dir, tmp_path, monkeypatch):
    real = cells.post

    def broken(*args):
        probs, uncertainty, shares, fine_map = real(*args)
        shares[0, shares.shape[1] // 2, :] += 1e-3
        return probs, uncertainty, shares, fine_map
    monkeypatch.setattr(cells, "post", broken)
    c = Component()
    c.init(SerialComm(), write_namelist(tmp_path / "a.nml", world_dir, prefetch_landuse=".false."))
    c.def_partition(Box(0, 0, 180, 90))
    c.enddef()
    with pytest.raises(EmulatorError, match="breaks the scenario by 0.001"):
        c.step((2020, 1, 1, 0))
    c.finalize()
