"""Training and held-out evaluation of the emulators (`ai4land train`).

Both trainings draw random tiles (longitude wraps; random flips and transposes) from the
training years (all but the last :data:`VALIDATION_YEARS`), stop early on the loss over the
held-out last years, and report metrics on those years for the model and for baselines (land use
also for a rollout through the held-out years on the model's own maps):

* land use: overall accuracy and mIoU over the 7 non-ocean classes, on land pixels, of the
  conserved probabilities (:meth:`LandUseEmulator.conserve`) and of the raw network, against
  persistence (last year's map) and coarse majority (the largest scenario group of the coarse
  cell, natural → grass/shrubland, inland water kept);
* LAI: RMSE and R² on land pixels against a class × calendar month × 10° latitude band mean of
  the training years.

Evaluation runs the network once over the whole (longitude-wrapped) field. Runs are
deterministic for a given seed and thread count.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .datasets import CLASS_CODES, CLASS_INDEX, CROPLAND, FOREST, GRASS, PASTURE, STATIC_NAMES, URBAN, WATER, WorldData
from .emulators.checkpoint import Emulator
from .emulators.lai import LaiEmulator, lai_from_raw
from .emulators.landuse import LandUseEmulator, landuse_features, one_hot_classes
from .emulators.unet import UNet
from .world import MID_MONTH_DOY

VALIDATION_YEARS = 4
LANDUSE_NAME = "landuse_unet_v1"
LAI_NAME = "lai_unet_v1"
GROUP_CLASS = np.array([FOREST, GRASS, URBAN, CROPLAND, PASTURE], dtype=np.uint8)  # scenario group → class
DEMAND = slice(5, 10)  # demand channels of the land-use input
N_CONTINUOUS = 12 + len(STATIC_NAMES)  # scenario, demand, position and static channels


class _Determinism:
    """Seeds, threads and deterministic algorithms for the duration of a training."""

    def __init__(self, seed: int, threads: int):
        self.seed, self.threads = seed, threads

    def __enter__(self) -> np.random.Generator:
        self._saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(True)
        torch.manual_seed(self.seed)
        return np.random.default_rng(self.seed)

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self._saved[0])
        torch.use_deterministic_algorithms(self._saved[1])


def split_years(years: list[int]) -> tuple[list[int], list[int]]:
    """(training target years, held-out years): the first year has no previous map to learn from."""
    if len(years) < VALIDATION_YEARS + 2:
        raise ValueError(f"need at least {VALIDATION_YEARS + 2} years of maps to train, got {len(years)}")
    return years[1:-VALIDATION_YEARS], years[-VALIDATION_YEARS:]


def forward_full(model: torch.nn.Module, x: np.ndarray, margin: int = 16) -> torch.Tensor:
    """Model output (K, H, W) on a whole global field (C, H, W): longitude wraps, poles replicate."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -(h + 2 * margin) % UNet.DOWNSAMPLING, -(w + 2 * margin) % UNet.DOWNSAMPLING
    t = torch.from_numpy(np.ascontiguousarray(x))[None]
    t = torch.cat([t[..., w - margin:], t, t[..., : margin + pad_w]], dim=-1)
    t = F.pad(t, (0, 0, margin, margin + pad_h), mode="replicate")
    with torch.inference_mode():
        return model(t)[0, :, margin:margin + h, margin:margin + w]


def _crop_sampler(land: np.ndarray, tile: int, rng: np.random.Generator):
    """Random tile windows (rows slice, column indices) centred on land, longitude wrapping."""
    h, w = land.shape
    tile = min(tile, h - h % UNet.DOWNSAMPLING)
    rows_land, cols_land = np.nonzero(land)

    def sample():
        k = rng.integers(rows_land.size)
        j0 = int(np.clip(rows_land[k] - tile // 2, 0, h - tile))
        cols = (cols_land[k] - tile // 2 + np.arange(tile)) % w
        return slice(j0, j0 + tile), cols, rng.random(3) < 0.5

    return sample


def _take(array: np.ndarray, window, transposed_channels=None) -> np.ndarray:
    """The window of ``array`` (..., H, W) under one of the 8 symmetries of the square.

    ``transposed_channels``: channel order to use when the window is transposed (swaps
    channels that name an axis).
    """
    rows, cols, flips = window
    out = array[..., rows, :][..., cols]
    if flips[0]:
        out = out[..., ::-1, :]
    if flips[1]:
        out = out[..., ::-1]
    if flips[2]:
        out = np.swapaxes(out, -1, -2)
        if transposed_channels is not None:
            out = out[transposed_channels]
    return np.ascontiguousarray(out)


def _fit(emulator: Emulator, sample_batch, val_loss, *, epochs: int, steps_per_epoch: int, lr: float,
         weight_decay: float, patience: int, progress: bool) -> dict:
    """AdamW, linear warm-up then cosine decay; keeps the weights of the best held-out loss. Returns the history."""
    model = emulator.model
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total, warmup = epochs * steps_per_epoch, max(1, epochs * steps_per_epoch // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + np.cos(np.pi * step / total)))
    best, best_state, since_best, history = float("inf"), None, 0, []
    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress, desc=f"train {emulator.kind}", unit="step")
    for epoch in range(epochs):
        model.train()
        running = 0.0
        for _ in range(steps_per_epoch):
            loss = sample_batch(model)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            running += loss.item()
            bar.update()
        model.eval()
        val = val_loss(model)
        history.append({"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "val_loss": val})
        bar.set_postfix(train=f"{running / steps_per_epoch:.4f}", val=f"{val:.4f}")
        if val < best:
            best, best_state, since_best = val, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return {"epochs_run": len(history), "best_epoch": min(history, key=lambda h: h["val_loss"])["epoch"],
            "best_val_loss": best, "history": history}


# ---------------------------------------------------------------- land use


def confusion(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """8×8 confusion matrix (truth rows, prediction columns) of class-code maps over ``mask``."""
    n = CLASS_CODES.size
    idx = CLASS_INDEX[truth[mask]] * n + CLASS_INDEX[pred[mask]]
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def landuse_scores(conf: np.ndarray) -> dict:
    """Overall accuracy and mean IoU over the non-ocean classes present."""
    diag = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - diag
    iou = {int(code): float(diag[i] / union[i]) for i, code in enumerate(CLASS_CODES) if i > 0 and union[i] > 0}
    return {"accuracy": float(diag.sum() / conf.sum()), "miou": float(np.mean(list(iou.values()))), "iou": iou}


def coarse_majority(scenario_fine: np.ndarray, prev_map: np.ndarray, land: np.ndarray) -> np.ndarray:
    out = GROUP_CLASS[np.argmax(scenario_fine, axis=0)]
    out[prev_map == WATER] = WATER
    out[~land] = 0
    return out


def predict_landuse(emulator: LandUseEmulator, world: WorldData, year: int, prev_map: np.ndarray) -> dict[str, np.ndarray]:
    """Most probable class codes (H, W) for ``year`` on the whole fine grid, with and without conservation."""
    scenario = world.scenario_groups_fine(year)
    x = emulator.inputs(scenario, world.static, prev_map)
    probs = emulator.apply_mask(emulator.probabilities(forward_full(emulator.model, x)[None])[0].numpy(), world.land_mask)
    return {"model": CLASS_CODES[np.argmax(emulator.conserve(probs, scenario, world.land_mask), axis=0)],
            "model_without_conservation": CLASS_CODES[np.argmax(probs, axis=0)]}


def evaluate_landuse(emulator: LandUseEmulator, world: WorldData, years) -> dict:
    """Model (conserved, and raw) vs persistence vs coarse majority on ``years`` (each from the true previous map)."""
    land = world.land_mask
    conf = {k: 0 for k in ("model", "model_without_conservation", "persistence", "coarse_majority")}
    changed = {"true": 0, "predicted": 0, "correct": 0}
    for year in years:
        prev, truth = world.lulc(year - 1), world.lulc(year)
        predictions = predict_landuse(emulator, world, year, prev)
        pred = predictions["model"]
        for name, p in predictions.items():
            conf[name] = conf[name] + confusion(p, truth, land)
        conf["persistence"] = conf["persistence"] + confusion(prev, truth, land)
        conf["coarse_majority"] = conf["coarse_majority"] + confusion(
            coarse_majority(world.scenario_groups_fine(year), prev, land), truth, land)
        changed["true"] += int(((truth != prev) & land).sum())
        changed["predicted"] += int(((pred != prev) & land).sum())
        changed["correct"] += int(((pred != prev) & (pred == truth) & land).sum())
    out = {k: landuse_scores(c) for k, c in conf.items()}
    out["changed_pixels"] = changed
    out["years"] = list(years)
    return out


def evaluate_rollout(emulator: LandUseEmulator, world: WorldData, years) -> dict:
    """Run the model on its own maps through ``years`` (as when coupled); scores of the last year."""
    land, start = world.land_mask, world.lulc(years[0] - 1)
    current = start
    for year in years:
        current = predict_landuse(emulator, world, year, current)["model"]
    truth = world.lulc(years[-1])
    return {"years": list(years), "model": landuse_scores(confusion(current, truth, land)),
            "persistence": landuse_scores(confusion(start, truth, land))}


def train_landuse(world_dir: str | Path, out_dir: str | Path, *, epochs: int = 40, seed: int = 0, threads: int = 2,
                  steps_per_epoch: int = 50, batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 1e-3, patience: int = 8,
                  widths=(16, 32, 64, 96), tile: int = 64, active_weight: float = 4.0, name: str = LANDUSE_NAME,
                  progress: bool = True) -> dict:
    """Train the land-use U-Net on a world directory; writes ``out_dir/<name>.{safetensors,json}``.

    Loss: cross-entropy on land pixels, ``active_weight`` times higher in coarse cells whose
    scenario asks for a change. Returns the metadata's ``metrics``.
    """
    start = time.perf_counter()
    with WorldData.open(world_dir) as world, _Determinism(seed, threads) as rng:
        train_years, val_years = split_years(world.years)
        land = world.land_mask
        raw = {t: landuse_features(world.scenario_groups_fine(t), world.static, world.lulc(t - 1), world.factor, STATIC_NAMES)
               for t in train_years + val_years}
        continuous = np.stack([raw[t][:N_CONTINUOUS, land] for t in train_years])
        n_onehot = raw[train_years[0]].shape[0] - continuous.shape[1]
        mean = np.concatenate([continuous.mean(axis=(0, 2)), np.zeros(n_onehot)])
        std = np.concatenate([np.maximum(continuous.std(axis=(0, 2)), 1e-6), np.ones(n_onehot)])
        emulator = LandUseEmulator.create(static_names=STATIC_NAMES, coarse_factor=world.factor,
                                          fine_resolution_deg=world.fine_grid.dlat, mean=mean, std=std,
                                          widths=widths, tile_size=tile)
        inputs = {t: emulator.normalise(r) for t, r in raw.items()}
        targets = {t: CLASS_INDEX[world.lulc(t)] for t in raw}
        active = {t: np.any(np.abs(r[DEMAND]) > 0.25 / world.factor**2, axis=0) for t, r in raw.items()}
        weights = {t: (land * (1.0 + (active_weight - 1.0) * a)).astype(np.float32) for t, a in active.items()}
        sample = _crop_sampler(land, tile, rng)
        transposed = np.arange(emulator.in_channels)  # a transpose swaps cell_row and cell_col
        row, col = emulator.channels.index("cell_row"), emulator.channels.index("cell_col")
        transposed[[row, col]] = [col, row]

        def weighted_ce(logits, y, w):
            return (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum().clamp_min(1.0)

        def sample_batch(model):
            picks = [(train_years[rng.integers(len(train_years))], sample()) for _ in range(batch_size)]
            x = torch.from_numpy(np.stack([_take(inputs[t], win, transposed) for t, win in picks]))
            y = torch.from_numpy(np.stack([_take(targets[t], win) for t, win in picks]))
            w = torch.from_numpy(np.stack([_take(weights[t], win) for t, win in picks]))
            return weighted_ce(model(x), y, w)

        def val_loss(model):
            return float(np.mean([weighted_ce(forward_full(model, inputs[t])[None], torch.from_numpy(targets[t])[None],
                                              torch.from_numpy(weights[t])[None]).item() for t in val_years]))

        history = _fit(emulator, sample_batch, val_loss, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr,
                       weight_decay=weight_decay, patience=patience, progress=progress)
        metrics = evaluate_landuse(emulator, world, val_years)
        metrics["rollout"] = evaluate_rollout(emulator, world, val_years)
        emulator.meta.update({
            "name": name,
            "training": {"seed": seed, "threads": threads, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
                         "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "patience": patience, "active_weight": active_weight,
                         "train_years": train_years, "validation_years": val_years,
                         "wall_time_s": round(time.perf_counter() - start, 1), **history},
            "training_data": {k: v for k, v in world.sha256().items() if k in ("static.nc", "luh2_states.nc", "lulc_maps.nc")},
            "metrics": metrics,
        })
        emulator.save(Path(out_dir) / name)
    return metrics


# ---------------------------------------------------------------- LAI


def _lai_scores(sq_err: float, sum_y: float, sum_y2: float, n: int) -> dict:
    variance = sum_y2 / n - (sum_y / n) ** 2
    return {"rmse": float(np.sqrt(sq_err / n)), "r2": float(1.0 - sq_err / n / variance)}


def class_climatology(world: WorldData, years, band_deg: float = 10.0) -> np.ndarray:
    """Mean LAI per (calendar month, class, latitude band) over ``years``: (12, 8, nbands)."""
    band = np.minimum(((world.fine_grid.lat + 90.0) // band_deg).astype(int), int(180 / band_deg) - 1)
    band_map = np.broadcast_to(band[:, None], world.fine_grid.shape)
    nbands, n = int(180 / band_deg), CLASS_CODES.size
    sums, counts = np.zeros((12, n * nbands)), np.zeros((12, n * nbands))
    for year in years:
        key = (CLASS_INDEX[world.lulc(year)] * nbands + band_map).ravel()
        for month in range(1, 13):
            sums[month - 1] += np.bincount(key, weights=world.lai(year, month).ravel(), minlength=n * nbands)
            counts[month - 1] += np.bincount(key, minlength=n * nbands)
    return (sums / np.maximum(counts, 1)).reshape(12, n, nbands)


def predict_lai(emulator: LaiEmulator, fractions: np.ndarray, drivers: np.ndarray, month: int, land: np.ndarray) -> np.ndarray:
    x = emulator.inputs(fractions, drivers, MID_MONTH_DOY[month - 1])
    return emulator.apply_mask(lai_from_raw(forward_full(emulator.model, x))[0].numpy(), land)


def evaluate_lai(emulator: LaiEmulator, world: WorldData, years, baseline_years) -> dict:
    """Model vs class-mean climatology (of ``baseline_years``) on all months of ``years``, land pixels."""
    land = world.land_mask
    clim = class_climatology(world, baseline_years)
    band = np.minimum(((world.fine_grid.lat + 90.0) // 10.0).astype(int), 17)
    sq = {"model": 0.0, "class_climatology": 0.0}
    sum_y = sum_y2 = 0.0
    n = 0
    for year in years:
        codes = world.lulc(year)
        fractions = one_hot_classes(codes)
        for month in range(1, 13):
            truth = world.lai(year, month)[land].astype(np.float64)
            pred = predict_lai(emulator, fractions, world.drivers(year, month), month, land)[land]
            base = clim[month - 1][CLASS_INDEX[codes], band[:, None]][land]
            sq["model"] += float(((pred - truth) ** 2).sum())
            sq["class_climatology"] += float(((base - truth) ** 2).sum())
            sum_y += float(truth.sum())
            sum_y2 += float((truth**2).sum())
            n += truth.size
    out = {k: _lai_scores(v, sum_y, sum_y2, n) for k, v in sq.items()}
    out["years"] = list(years)
    return out


def train_lai(world_dir: str | Path, out_dir: str | Path, *, epochs: int = 30, seed: int = 0, threads: int = 2,
              steps_per_epoch: int = 50, batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 1e-3, patience: int = 8,
              widths=(16, 32, 64, 96), tile: int = 64, name: str = LAI_NAME, progress: bool = True) -> dict:
    """Train the LAI U-Net (inputs: one-hot of the true map, drivers, season); MSE on land pixels."""
    start = time.perf_counter()
    with WorldData.open(world_dir) as world, _Determinism(seed, threads) as rng:
        train_years, val_years = split_years(world.years)
        train_years = [world.years[0]] + train_years  # LAI needs no previous map
        land = world.land_mask
        onehot = {y: one_hot_classes(world.lulc(y)) for y in world.years}
        drivers = {(y, m): world.drivers(y, m) for y in world.years for m in range(1, 13)}
        lai = {(y, m): world.lai(y, m) for y in world.years for m in range(1, 13)}
        train_keys = [(y, m) for y in train_years for m in range(1, 13)]
        stacked = np.stack([drivers[k][:, land] for k in train_keys])
        n_frac = onehot[train_years[0]].shape[0]
        mean = np.concatenate([np.zeros(n_frac), stacked.mean(axis=(0, 2)), np.zeros(2)])
        std = np.concatenate([np.ones(n_frac), stacked.std(axis=(0, 2)), np.ones(2)])
        emulator = LaiEmulator.create(fine_resolution_deg=world.fine_grid.dlat, mean=mean, std=std, widths=widths, tile_size=tile)
        sample = _crop_sampler(land, tile, rng)
        land_f = land.astype(np.float32)

        def inputs_of(key):
            return emulator.inputs(onehot[key[0]], drivers[key], MID_MONTH_DOY[key[1] - 1])

        def masked_mse(pred, y, w):
            return (((pred - y) ** 2) * w).sum() / w.sum().clamp_min(1.0)

        def sample_batch(model):
            picks = [(train_keys[rng.integers(len(train_keys))], sample()) for _ in range(batch_size)]
            x = torch.from_numpy(np.stack([_take(inputs_of(k), win) for k, win in picks]))
            y = torch.from_numpy(np.stack([_take(lai[k], win) for k, win in picks]))[:, None]
            w = torch.from_numpy(np.stack([_take(land_f, win) for _, win in picks]))[:, None]
            return masked_mse(lai_from_raw(model(x)), y, w)

        val_keys = [(y, m) for y in val_years for m in (1, 4, 7, 10)]

        def val_loss(model):
            w = torch.from_numpy(land_f)
            return float(np.mean([masked_mse(lai_from_raw(forward_full(model, inputs_of(k)))[0], torch.from_numpy(lai[k]), w).item()
                                  for k in val_keys]))

        history = _fit(emulator, sample_batch, val_loss, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr,
                       weight_decay=weight_decay, patience=patience, progress=progress)
        metrics = evaluate_lai(emulator, world, val_years, train_years)
        emulator.meta.update({
            "name": name,
            "training": {"seed": seed, "threads": threads, "epochs": epochs, "steps_per_epoch": steps_per_epoch,
                         "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "patience": patience,
                         "train_years": train_years, "validation_years": val_years,
                         "wall_time_s": round(time.perf_counter() - start, 1), **history},
            "training_data": {k: v for k, v in world.sha256().items()
                              if k in ("lulc_maps.nc", "drivers_climatology.nc", "drivers_anomaly.nc", "lai_monthly.nc")},
            "metrics": metrics,
        })
        emulator.save(Path(out_dir) / name)
    return metrics


SHIPPED_EPOCHS = {"landuse": 40, "lai": 30}  # what trained the shipped emulators


def main_train(world_dir: str | Path, out_dir: str | Path, kind: str, epochs: int | None, seed: int, threads: int) -> dict:
    """`ai4land train`: ``kind`` is "landuse", "lai" or "all"; returns {kind: metrics}."""
    trainers = {"landuse": train_landuse, "lai": train_lai}
    if kind not in (*trainers, "all"):
        raise ValueError(f"unknown emulator kind '{kind}' (expected landuse, lai or all)")
    kinds = list(trainers) if kind == "all" else [kind]
    return {k: trainers[k](world_dir, out_dir, epochs=epochs or SHIPPED_EPOCHS[k], seed=seed, threads=threads)
            for k in kinds}
