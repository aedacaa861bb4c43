"""Held-out evaluation of the emulators (`ai4land evaluate`, and the metrics `ai4land train` stores).

Three splits (:func:`make_splits`): the held-out years over the training region, the held-out
region over every year that has a previous map, and the held-out region in the held-out years.
Scores count land pixels whose observed class is known (not :data:`NODATA`):

* land use: overall accuracy, the IoU of each non-ocean class and their mean (mIoU), for the
  model (as coupled: probabilities conserved, then the demand-constrained allocation of the map),
  the model without conservation (most probable class), persistence (last year's map)
  and coarse majority (the largest scenario group of the coarse cell, natural → grass/shrubland,
  last year's inland water kept);
* LAI: RMSE and R², for the model (given the observed map), persistence (the same month of the
  previous year), the coarse climatology (the class × calendar month × 10° latitude band mean of
  the training years over the training region, applied to the coarse-majority map) and, as a
  reference that knows the observed map, the same climatology applied to the observed map.

Fields are predicted as in the coupled model: :func:`inference.tiled_predict` (Gaussian sliding
window, the namelist's default tile and overlap), then the emulator's masked finish
(``masked_probabilities`` or ``masked_lai``) and, for land use, ``conserve`` and ``allocate``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .datasets import CLASS_CODES, CLASS_INDEX, CROPLAND, FOREST, GRASS, LANDUSE_CLASSES, NODATA, PASTURE, URBAN, WATER, WorldData
from .emulators.checkpoint import Emulator
from .emulators.lai import LaiEmulator
from .emulators.landuse import LandUseEmulator, one_hot_classes
from .emulators.registry import load_emulator
from .grids import ON_LINE, LatLonGrid, Region
from .inference import tiled_predict
from .namelist import Config
from .world import MID_MONTH_DOY

COUPLED = Config()  # the inference settings a coupled run uses by default
GROUP_CLASS = np.array([FOREST, GRASS, URBAN, CROPLAND, PASTURE], dtype=np.uint8)  # scenario group → class
CLASS_NAMES = [name for _, name in LANDUSE_CLASSES]
LANDUSE_METHODS = ("model", "model_without_conservation", "persistence", "coarse_majority")
LAI_METHODS = ("model", "persistence", "coarse_climatology", "class_climatology")
LATITUDE_BAND_DEG = 10.0
SPLIT_NAMES = ("heldout_years", "heldout_region", "heldout_region_years")  # in the order of make_splits


# ---------------------------------------------------------------- regions and splits


def region_mask(grid: LatLonGrid, region: Region) -> np.ndarray:
    """The cells (H, W) of ``grid`` that overlap ``region`` (a shared edge is no overlap); the part of
    the region outside the grid's domain, if any, is ignored."""
    south, north = grid.lat_bounds.T
    rows = (south < region.lat_max - ON_LINE * grid.dlat) & (north > region.lat_min + ON_LINE * grid.dlat)
    east_of_start = (grid.lon_bounds[:, 0] - region.lon_min) % 360.0  # of each column's western edge
    cols = ((east_of_start < region.lon_span - ON_LINE * grid.dlon)
            | (east_of_start > 360.0 - grid.dlon + ON_LINE * grid.dlon))  # the column holds the region's western edge
    return rows[:, None] & cols[None, :]


def training_pixels(world: WorldData, region: Region) -> np.ndarray:
    """Land pixels (H, W) outside the held-out region: all the training may see."""
    return world.land_mask & ~region_mask(world.fine_grid, region)


@dataclass(frozen=True)
class Split:
    name: str
    description: str
    years: tuple[int, ...]
    pixels: np.ndarray  # (H, W) bool: the land pixels scored (before excluding NODATA)


def make_splits(world: WorldData, heldout_years, region: Region) -> list[Split]:
    """The three evaluation splits: held-out years × training region, held-out region × every year with a
    previous map, held-out region × held-out years."""
    training = training_pixels(world, region)
    heldout = world.land_mask & ~training
    heldout_years = tuple(int(y) for y in heldout_years)
    return [
        Split(SPLIT_NAMES[0], "held-out years, training region", heldout_years, training),
        Split(SPLIT_NAMES[1], "held-out region, every year with a previous map", tuple(world.years[1:]), heldout),
        Split(SPLIT_NAMES[2], "held-out region in the held-out years", heldout_years, heldout),
    ]


def _years_of(splits: list[Split]) -> list[int]:
    return sorted(set().union(*(s.years for s in splits)))


# ---------------------------------------------------------------- inference as when coupled


def blended_output(emulator: Emulator, inputs: np.ndarray, *, wrap_lon: bool) -> np.ndarray:
    """The network output (K, H, W) over a whole field (C, H, W): the coupled model's tiled Gaussian
    sliding window with the namelist's default tile size and overlap, in one process."""
    return tiled_predict(emulator.predict_batch, inputs, tile=COUPLED.tile_size, overlap=COUPLED.tile_overlap, wrap_lon=wrap_lon)


def coarse_majority(scenario_fine: np.ndarray, prev_map: np.ndarray, land: np.ndarray) -> np.ndarray:
    """Class map of the largest scenario group of each coarse cell; last year's inland water kept; ocean 0."""
    out = GROUP_CLASS[np.argmax(scenario_fine, axis=0)]
    out[prev_map == WATER] = WATER
    out[~land] = 0
    return out


def predict_landuse(emulator: LandUseEmulator, world: WorldData, year: int, prev_map: np.ndarray) -> dict[str, np.ndarray]:
    """Class maps (H, W) of ``year`` from ``prev_map`` by every land-use method."""
    land, area = world.land_mask, world.fine_grid.cell_area_weights()
    scenario = world.scenario_groups_fine(year)
    x = emulator.inputs(scenario, world.static, prev_map, area)
    probs = emulator.masked_probabilities(blended_output(emulator, x, wrap_lon=world.fine_grid.is_global), land)
    conserved = emulator.conserve(probs, scenario, land, area)
    return {"model": emulator.allocate(conserved, scenario, land, area, prev_map),
            "model_without_conservation": CLASS_CODES[np.argmax(probs, axis=0)],
            "persistence": prev_map,
            "coarse_majority": coarse_majority(scenario, prev_map, land)}


def predict_lai(emulator: LaiEmulator, world: WorldData, class_map: np.ndarray, drivers: np.ndarray, month: int) -> np.ndarray:
    """LAI (H, W) of a month (mid-month day of year) given the class map and the drivers."""
    x = emulator.inputs(one_hot_classes(class_map), drivers, MID_MONTH_DOY[month - 1])
    return emulator.masked_lai(blended_output(emulator, x, wrap_lon=world.fine_grid.is_global), world.land_mask)


# ---------------------------------------------------------------- land use


def confusion(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Confusion counts (8, 9) over ``mask``: rows the true class, columns the predicted class, the last
    column predictions that are no class (a NODATA pixel carried over by persistence)."""
    n = CLASS_CODES.size
    predicted = CLASS_INDEX[pred[mask]]
    idx = CLASS_INDEX[truth[mask]] * (n + 1) + np.where(predicted < 0, n, predicted)
    return np.bincount(idx, minlength=n * (n + 1)).reshape(n, n + 1)


def landuse_scores(conf: np.ndarray) -> dict:
    """Overall accuracy, and the IoU of each non-ocean class present (in the truth or the prediction) and their mean."""
    n = conf.shape[0]
    hits = np.diag(conf[:, :n]).astype(float)
    union = conf.sum(axis=1) + conf[:, :n].sum(axis=0) - hits
    iou = {CLASS_NAMES[i]: float(hits[i] / union[i]) for i in range(1, n) if union[i] > 0}
    return {"accuracy": float(hits.sum() / conf.sum()), "miou": float(np.mean(list(iou.values()))), "iou": iou}


def _split_result(split: Split, samples: int, methods: dict) -> dict:
    return {"description": split.description, "years": list(split.years), "samples": int(samples), "methods": methods}


def evaluate_landuse(emulator: LandUseEmulator, world: WorldData, splits: list[Split], *, progress: bool = False) -> dict:
    """{split: {description, years, samples, methods: {method: scores}}}, each year predicted from the
    observed previous map; samples: the scored (pixel, year) pairs (no methods where there are none)."""
    n = CLASS_CODES.size
    conf = {s.name: {m: np.zeros((n, n + 1), dtype=np.int64) for m in LANDUSE_METHODS} for s in splits}
    for year in tqdm(_years_of(splits), desc=f"evaluate {emulator.name}", unit="year", disable=not progress):
        truth, predictions = world.lulc(year), predict_landuse(emulator, world, year, world.lulc(year - 1))
        for split in (s for s in splits if year in s.years):
            scored = split.pixels & (truth != NODATA)
            for method, pred in predictions.items():
                conf[split.name][method] += confusion(pred, truth, scored)
    out = {}
    for s in splits:
        samples = int(conf[s.name]["model"].sum())
        out[s.name] = _split_result(s, samples, {m: landuse_scores(c) for m, c in conf[s.name].items()} if samples else {})
    return out


# ---------------------------------------------------------------- LAI


def latitude_bands(grid: LatLonGrid) -> np.ndarray:
    """Index (H,) of each row's 10° latitude band, 0 = 90–80° S."""
    nbands = int(180 / LATITUDE_BAND_DEG)
    return np.clip(((grid.lat + 90.0) // LATITUDE_BAND_DEG).astype(int), 0, nbands - 1)


def class_climatology(world: WorldData, years, pixels: np.ndarray) -> np.ndarray:
    """Mean LAI per (calendar month, class, 10° latitude band) over ``years`` and ``pixels`` (NODATA left out):
    (12, 8, 18); 0 where a class never occurs in a band."""
    nbands, n = int(180 / LATITUDE_BAND_DEG), CLASS_CODES.size
    bands = np.broadcast_to(latitude_bands(world.fine_grid)[:, None], world.fine_grid.shape)
    sums, counts = np.zeros((12, n * nbands)), np.zeros((12, n * nbands))
    for year in years:
        codes = world.lulc(year)
        used = pixels & (codes != NODATA)
        key = CLASS_INDEX[codes[used]] * nbands + bands[used]
        for month in range(1, 13):
            sums[month - 1] += np.bincount(key, weights=world.lai(year, month)[used], minlength=n * nbands)
            counts[month - 1] += np.bincount(key, minlength=n * nbands)
    return (sums / np.maximum(counts, 1)).reshape(12, n, nbands)


def apply_climatology(climatology: np.ndarray, month: int, class_map: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """LAI (H, W) of ``month`` from the climatology of each pixel's class and latitude band (NODATA → 0)."""
    return climatology[month - 1][np.maximum(CLASS_INDEX[class_map], 0), bands[:, None]]


def lai_scores(sq_err: float, sum_y: float, sum_y2: float, n: int) -> dict:
    """RMSE and R² (1 − SSE / total sum of squares about the split's mean) from running sums."""
    return {"rmse": float(np.sqrt(sq_err / n)), "r2": float(1.0 - sq_err / (sum_y2 - sum_y**2 / n))}


def evaluate_lai(emulator: LaiEmulator, world: WorldData, splits: list[Split], climatology_years,
                 climatology_pixels: np.ndarray, *, progress: bool = False) -> dict:
    """{split: {description, years, samples, methods: {method: scores}}} over all months of each split's
    years; samples: the scored (pixel, month) pairs (no methods where there are none).

    The class climatology of ``climatology_years`` over ``climatology_pixels`` (the training years and
    region) makes the two climatology baselines.
    """
    land, bands = world.land_mask, latitude_bands(world.fine_grid)
    climatology = class_climatology(world, climatology_years, climatology_pixels)
    totals = {s.name: {"sq_err": dict.fromkeys(LAI_METHODS, 0.0), "sum_y": 0.0, "sum_y2": 0.0, "n": 0} for s in splits}
    for year in tqdm(_years_of(splits), desc=f"evaluate {emulator.name}", unit="year", disable=not progress):
        codes, prev = world.lulc(year), world.lulc(year - 1)
        coarse = coarse_majority(world.scenario_groups_fine(year), prev, land)
        for month in range(1, 13):
            truth = world.lai(year, month).astype(np.float64)
            predictions = {"model": predict_lai(emulator, world, codes, world.drivers(year, month), month),
                           "persistence": world.lai(year - 1, month),
                           "coarse_climatology": apply_climatology(climatology, month, coarse, bands),
                           "class_climatology": apply_climatology(climatology, month, codes, bands)}
            for split in (s for s in splits if year in s.years):
                scored = split.pixels & (codes != NODATA)
                y, t = truth[scored], totals[split.name]
                for method, pred in predictions.items():
                    t["sq_err"][method] += float(((pred[scored] - y) ** 2).sum())
                t["sum_y"] += float(y.sum())
                t["sum_y2"] += float((y**2).sum())
                t["n"] += y.size
    out = {}
    for s in splits:
        t = totals[s.name]
        out[s.name] = _split_result(s, t["n"], {m: lai_scores(e, t["sum_y"], t["sum_y2"], t["n"])
                                                for m, e in t["sq_err"].items()} if t["n"] else {})
    return out


# ---------------------------------------------------------------- a checkpoint on a world, and the report


def evaluate_checkpoint(kind: str, emulator: str | Path, world_dir: str | Path, *, years=None, region: Region | None = None,
                        device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """`ai4land evaluate`: the three splits of an emulator (shipped name or checkpoint path) on a world.

    ``years`` and ``region`` default to the held-out years and region recorded in the checkpoint.
    """
    em = load_emulator(kind, emulator, device)
    training = em.meta.get("training", {})
    years = list(years or training.get("validation_years", []))
    if not years:
        raise ValueError(f"{emulator}: the checkpoint records no held-out years; pass --years")
    if region is None:
        if "holdout_region" not in training:
            raise ValueError(f"{emulator}: the checkpoint records no held-out region; pass --region")
        region = Region(**training["holdout_region"])
    with WorldData.open(world_dir) as world:
        missing = [y for y in years if y - 1 not in world.years or y not in world.years]
        if missing:
            raise ValueError(f"{world_dir}: years {missing} lack an observed map or the map of the year before")
        splits = make_splits(world, years, region)
        if kind == "landuse":
            splits_result = evaluate_landuse(em, world, splits, progress=progress)
        else:
            climatology_years = [y for y in training.get("train_years", world.years) if y not in years]
            splits_result = evaluate_lai(em, world, splits, climatology_years, training_pixels(world, region),
                                         progress=progress)
    return {"kind": kind, "emulator": em.name, "world": str(world_dir), "heldout_years": years,
            "holdout_region": asdict(region), "splits": splits_result}


def _markdown_table(methods: dict, columns: list[tuple[str, Callable[[dict], float | None], bool]]) -> list[str]:
    """Rows = methods, columns = (header, value of a method's scores, higher is better); the best in bold."""
    values = {m: [get(scores) for _, get, _ in columns] for m, scores in methods.items()}
    best = []
    for c, (_, _, higher) in enumerate(columns):
        present = [row[c] for row in values.values() if row[c] is not None]
        best.append((max if higher else min)(present) if present else None)
    lines = ["| method | " + " | ".join(h for h, _, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method, row in values.items():
        text = ["–" if v is None else f"**{v:.4f}**" if v == best[c] else f"{v:.4f}" for c, v in enumerate(row)]
        lines.append(f"| {method} | " + " | ".join(text) + " |")
    return lines


def markdown_tables(kind: str, splits_result: dict) -> str:
    """One markdown table per split: rows = methods, columns = metrics, the best in bold."""
    if kind == "landuse":
        columns = [("accuracy", lambda s: s["accuracy"], True), ("mIoU", lambda s: s["miou"], True)] + [
            (f"IoU {name}", lambda s, name=name: s["iou"].get(name), True) for name in CLASS_NAMES[1:]]
        samples = "pixel-years"
    else:
        columns = [("RMSE (m² m⁻²)", lambda s: s["rmse"], False), ("R²", lambda s: s["r2"], True)]
        samples = "pixel-months"
    methods = LANDUSE_METHODS if kind == "landuse" else LAI_METHODS
    lines = []
    for name in sorted(splits_result, key=lambda n: SPLIT_NAMES.index(n) if n in SPLIT_NAMES else len(SPLIT_NAMES)):
        result = splits_result[name]  # metadata read back from JSON has its keys sorted: use the canonical order
        years = result["years"]
        span = f"{years[0]}–{years[-1]}" if years else "no years"
        lines += [f"### {result['description']} ({span}, {result['samples']} {samples})", ""]
        ordered = {m: result["methods"][m] for m in methods if m in result["methods"]}
        lines += _markdown_table(ordered, columns) if ordered else ["(no scored pixels)"]
        lines.append("")
    return "\n".join(lines)


def markdown_report(report: dict) -> str:
    """The markdown of an :func:`evaluate_checkpoint` report: a heading, then a table per split."""
    r = report["holdout_region"]
    head = (f"## {report['kind']} emulator `{report['emulator']}` on `{report['world']}`\n\n"
            f"Held-out years {', '.join(map(str, report['heldout_years']))}; held-out region "
            f"lat {r['lat_min']}…{r['lat_max']}, lon {r['lon_min']}…{r['lon_max']}.\n\n")
    return head + markdown_tables(report["kind"], report["splits"])
