"""Training under torchrun (DDP), reproducibility, the held-out region, and `ai4land evaluate`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from ai4land_coupler import cli
from ai4land_coupler.datasets import NODATA, sha256_file
from ai4land_coupler.emulators import load_emulator
from ai4land_coupler.evaluation import confusion, lai_scores, landuse_scores, region_mask
from ai4land_coupler.grids import LatLonGrid, Region
from ai4land_coupler.training import HOLDOUT_REGION, WindowSampler, main_train, windows_touching
from ai4land_coupler.world import make_world

TINY = {"steps_per_epoch": 2, "batch_size": 4, "widths": (8, 8, 16, 16), "tile": 32}
TINY_ARGS = ["--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4", "--widths", "8", "8", "16", "16", "--tile", "32"]
SPLITS = ("heldout_years", "heldout_region", "heldout_region_years")


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_world")
    make_world(out, seed=0, fine_res=3.0, coarse_res=12.0, first_year=2015, last_year=2022)
    return out


@pytest.fixture(scope="module")
def ddp_run(tiny_world, tmp_path_factory):
    """`ai4land train --kind all` under `torchrun --nproc_per_node=2` on CPU: (completed process, output folder)."""
    out = tmp_path_factory.mktemp("ddp")
    torchrun = Path(sys.executable).parent / "torchrun"
    run = subprocess.run([str(torchrun), "--nproc_per_node=2", "--standalone", "-m", "ai4land_coupler.cli", "train",
                          "--world", str(tiny_world), "--out", str(out), "--kind", "all", "--device", "cpu", *TINY_ARGS],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    return run, out


def test_torchrun_with_two_processes_writes_a_loadable_checkpoint(ddp_run):
    run, out = ddp_run
    assert run.returncode == 0, run.stderr[-4000:]
    for kind, name in (("landuse", "landuse_unet_v1"), ("lai", "lai_unet_v1")):
        training = load_emulator(kind, out / name).meta["training"]
        assert (training["world_size"], training["backend"], training["device"]) == (2, "gloo", "cpu")
        assert training["holdout_region"] == asdict(HOLDOUT_REGION)
        assert training["threads"] == 1  # 2 cores // 2 processes
        assert training["validation_years"] == [2019, 2020, 2021, 2022]
        assert run.stdout.count(f"## {kind}: held-out skill") == 1, "only rank 0 prints"


def _train_tiny(world: Path, out: Path, seed: int) -> str:
    main_train(world, out, "landuse", epochs=1, seed=seed, threads=1, device="cpu", progress=False, **TINY)
    return sha256_file(out / "landuse_unet_v1.safetensors")


def test_single_process_training_is_reproducible_for_a_seed(tiny_world, tmp_path):
    assert "WORLD_SIZE" not in os.environ
    first, again, other = (_train_tiny(tiny_world, tmp_path / name, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert first == again
    assert first != other
    meta = json.loads((tmp_path / "a" / "landuse_unet_v1.json").read_text())
    assert (meta["training"]["world_size"], meta["training"]["backend"]) == (1, None)
    assert set(meta["metrics"]) == set(SPLITS)


@pytest.mark.parametrize("kind", ["landuse", "lai"])
def test_evaluate_prints_the_tables_and_writes_the_three_splits(ddp_run, tiny_world, tmp_path, capsys, kind):
    _, out = ddp_run
    name = f"{kind}_unet_v1"
    report_json, report_md = tmp_path / "report.json", tmp_path / "report.md"
    assert cli.main(["evaluate", "--kind", kind, "--emulator", str(out / name), "--world", str(tiny_world),
                     "--json", str(report_json), "--markdown", str(report_md)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("| method |") == 3 and "| persistence |" in printed
    assert report_md.read_text().strip() == printed.strip()
    report = json.loads(report_json.read_text())
    assert report["holdout_region"] == asdict(HOLDOUT_REGION) and report["heldout_years"] == [2019, 2020, 2021, 2022]
    splits = report["splits"]
    assert list(splits) == list(SPLITS)
    assert splits["heldout_years"]["years"] == splits["heldout_region_years"]["years"] == [2019, 2020, 2021, 2022]
    assert splits["heldout_region"]["years"] == list(range(2016, 2023))
    methods = {"landuse": {"model", "model_without_conservation", "persistence", "coarse_majority"},
               "lai": {"model", "persistence", "coarse_climatology", "class_climatology"}}[kind]
    for split in splits.values():
        assert split["samples"] > 0 and set(split["methods"]) == methods
        for scores in split["methods"].values():
            if kind == "landuse":
                assert 0.0 <= scores["accuracy"] <= 1.0 and 0.0 <= scores["miou"] <= 1.0
                assert all(0.0 <= v <= 1.0 for v in scores["iou"].values())
            else:
                assert scores["rmse"] >= 0.0 and scores["r2"] <= 1.0
    assert splits["heldout_region_years"]["samples"] < splits["heldout_region"]["samples"]  # 4 of its 7 years


def test_evaluate_takes_years_and_region_from_the_command_line(ddp_run, tiny_world, tmp_path, capsys):
    _, out = ddp_run
    report_json = tmp_path / "report.json"
    assert cli.main(["evaluate", "--kind", "landuse", "--emulator", str(out / "landuse_unet_v1"), "--world", str(tiny_world),
                     "--years", "2021", "2022", "--region", "0,30,0,60", "--json", str(report_json)]) == 0
    report = json.loads(report_json.read_text())
    assert report["heldout_years"] == [2021, 2022]
    assert report["holdout_region"] == {"lat_min": 0.0, "lat_max": 30.0, "lon_min": 0.0, "lon_max": 60.0}
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--kind", "landuse", "--emulator", "x", "--world", "y", "--region", "0,30,0"])
    assert cli.main(["evaluate", "--kind", "landuse", "--emulator", str(out / "landuse_unet_v1"), "--world",
                     str(tiny_world), "--years", "2015"]) == 2
    assert "years [2015] lack an observed map or the map of the year before" in capsys.readouterr().err


# ---------------------------------------------------------------- scores on hand-made maps


def test_land_use_scores_by_hand():
    # ocean 0, urban 11, cropland 22, forest 44; one pixel without data; one pixel of ocean left out by the mask
    truth = np.array([[11, 11, 22, 22],
                      [44, 44, 44, NODATA],
                      [0, 22, 44, 11]], dtype=np.uint8)
    pred = np.array([[11, 22, 22, 22],
                     [44, 44, 22, 11],
                     [0, 22, 44, NODATA]], dtype=np.uint8)
    land = truth != 0
    conf = confusion(pred, truth, land & (truth != NODATA))
    assert conf.shape == (8, 9) and conf.sum() == 10
    scores = landuse_scores(conf)
    # hits: urban 1, cropland 3, forest 3 → 7 of 10 (the urban pixel predicted NODATA is a miss)
    assert scores["accuracy"] == pytest.approx(0.7)
    # IoU = hits / (truth + predicted − hits): urban 1/(3+1−1), cropland 3/(3+5−3), forest 3/(4+3−3)
    assert scores["iou"] == pytest.approx({"urban": 1 / 3, "cropland": 3 / 5, "forest": 3 / 4})
    assert scores["miou"] == pytest.approx((1 / 3 + 3 / 5 + 3 / 4) / 3)


def test_lai_scores_by_hand():
    truth, pred = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 4.0])
    sq_err = float(((pred - truth) ** 2).sum())  # 0.25 + 1 = 1.25
    scores = lai_scores(sq_err, truth.sum(), (truth**2).sum(), truth.size)
    assert scores["rmse"] == pytest.approx(np.sqrt(1.25 / 4))
    assert scores["r2"] == pytest.approx(1.0 - 1.25 / 5.0)  # total sum of squares about the mean 2.5: 5


# ---------------------------------------------------------------- the held-out region


def test_the_holdout_region_holds_a_tenth_to_a_fifth_of_the_default_world_land(world_dir):
    with netCDF4.Dataset(world_dir / "static.nc") as ds:
        land = np.asarray(ds["land_mask"][:]) == 1
        grid = LatLonGrid.from_centres(ds["lat"][:], ds["lon"][:])
    area = grid.cell_area_weights()
    share = (area * (land & region_mask(grid, HOLDOUT_REGION))).sum() / (area * land).sum()
    assert 0.1 <= share <= 0.2


@pytest.mark.parametrize("wrap_lon", [True, False])
def test_windows_touching_matches_brute_force(wrap_lon):
    rng = np.random.default_rng(0)
    mask = rng.random((12, 20)) < 0.03
    tile = 5
    touching = windows_touching(mask, tile, wrap_lon)
    assert touching.shape == (8, 20 if wrap_lon else 16)
    for j in range(touching.shape[0]):
        for i in range(touching.shape[1]):
            assert touching[j, i] == mask[j:j + tile][:, (i + np.arange(tile)) % 20].any()


@pytest.mark.parametrize("resolution, tile", [(1.0, 64), (3.0, 32)])
def test_training_windows_never_touch_the_holdout_region(resolution, tile):
    grid = LatLonGrid.global_grid(resolution)
    held_out = region_mask(grid, HOLDOUT_REGION)
    everywhere = np.ones(grid.shape, dtype=bool)
    sample = WindowSampler(everywhere, held_out, tile, np.random.default_rng(0), wrap_lon=True)
    windows = [sample() for _ in range(3000)]
    assert not any(held_out[w.rows][:, w.cols].any() for w in windows)
    assert len({int(w.cols[0]) for w in windows}) > 0.3 * grid.nlon  # and they spread around the globe


def test_region_mask_takes_every_cell_the_region_overlaps():
    grid = LatLonGrid.global_grid(3.0)
    rows, cols = np.nonzero(region_mask(grid, Region(-1.0, 1.0, 170.0, -170.0)))  # across the dateline
    assert set(grid.lat[rows]) == {-1.5, 1.5}
    assert set(grid.lon[cols]) == {169.5, 172.5, 175.5, 178.5, -178.5, -175.5, -172.5, -169.5}
    rows, cols = np.nonzero(region_mask(grid, Region(-3.0, 3.0, 0.0, 6.0)))  # on cell edges: no neighbours
    assert set(grid.lat[rows]) == {-1.5, 1.5} and set(grid.lon[cols]) == {1.5, 4.5}
    regional = LatLonGrid(10, 10, lat0=0.0, lon0=0.0, dlat=1.0, dlon=1.0)  # 0–10° N, 0–10° E
    rows, cols = np.nonzero(region_mask(regional, Region(-5.0, 4.5, -20.0, 2.5)))  # partly outside the domain
    assert set(rows) == set(range(5)) and set(cols) == {0, 1, 2}
    assert not region_mask(regional, HOLDOUT_REGION).any()
