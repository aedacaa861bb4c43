"""Training of the emulators (`ai4land train`), in one process or under torchrun.

Both trainings draw random tiles (random flips and transposes; longitude wraps on a global grid)
from the training years — all but the last :data:`VALIDATION_YEARS` — and from the training
region: no window touches :data:`HOLDOUT_REGION`. They stop early on the loss over the held-out
years in the training region, predicted as when coupled (the tiled sliding window), and store in
the checkpoint metadata the metrics of :mod:`evaluation` on its three held-out splits. Pixels
whose observed class is NODATA count in no loss.

* land use: cross-entropy on land pixels, ``active_weight`` times higher in coarse cells whose
  scenario asks for a change;
* LAI (inputs: one-hot of the observed map, drivers, season): mean squared error on land pixels.

Distributed: under ``torchrun --nproc_per_node=N`` (env WORLD_SIZE, RANK, LOCAL_RANK) the network
is wrapped in DistributedDataParallel (backend gloo on CPU, nccl on cuda:LOCAL_RANK). Each rank
trains on ``batch_size / N`` windows per step, drawn by its own generator seeded by (seed, rank);
the validation fields are shared among the ranks and their losses gathered, so that every rank
takes the same early-stopping decision; rank 0 alone shows progress, evaluates and writes the
checkpoint. A run gives the same bits for a given seed, world size and thread count on CPU.
"""
from __future__ import annotations

import copy
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .datasets import BIOCLIM_NAMES, CLASS_INDEX, LANDUSE_CLASSES, NODATA, STATIC_NAMES, WorldData
from .emulators.checkpoint import Emulator
from .emulators.lai import LaiEmulator, lai_from_raw
from .emulators.landuse import LandUseEmulator, landuse_features, one_hot_classes
from .emulators.unet import UNet
from .evaluation import blended_output, evaluate_lai, evaluate_landuse, make_splits, region_mask, training_pixels
from .grids import Region
from .world import MID_MONTH_DOY

VALIDATION_YEARS = 4
# The tropical continent west of the prime meridian in the default world (`ai4land make-data --seed 0`):
# 17 % of its land area (10 % of its land cells on the 1° grid).
HOLDOUT_REGION = Region(lat_min=-25.0, lat_max=20.0, lon_min=-85.0, lon_max=-30.0)
LANDUSE_NAME = "landuse_unet_v1"
LAI_NAME = "lai_unet_v1"
SHIPPED_EPOCHS = {"landuse": 40, "lai": 30}  # what trained the shipped emulators
DEMAND = slice(5, 10)  # demand channels of the land-use input
DISTRIBUTED_TIMEOUT = timedelta(minutes=60)  # rank 0 evaluates while the other ranks wait


# ---------------------------------------------------------------- processes, devices, seeds


@dataclass(frozen=True)
class Launch:
    """This process's part in a training: its rank among ``world_size`` processes, the
    torch.distributed backend (None: a single process without torchrun) and its device."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"`` or ``"cuda"`` → this process's device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device != "cuda":
        raise ValueError(f"unknown device '{device}' (expected auto, cpu or cuda)")
    if not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


@contextmanager
def distributed_launch(device: str = "auto") -> Iterator[Launch]:
    """The process group of a torchrun launch (env WORLD_SIZE, RANK, LOCAL_RANK), destroyed at the end;
    without torchrun, a single process."""
    if "WORLD_SIZE" not in os.environ:
        yield Launch(device=resolve_device(device))
        return
    this_device = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if this_device.type == "cuda" else "gloo"
    if this_device.type == "cuda":
        torch.cuda.set_device(this_device)
    dist.init_process_group(backend, timeout=DISTRIBUTED_TIMEOUT)
    try:
        yield Launch(dist.get_rank(), dist.get_world_size(), backend, this_device)
    finally:
        dist.destroy_process_group()


def _all_gather(obj, launch: Launch) -> list:
    """Every rank's ``obj``, in rank order."""
    if launch.backend is None:
        return [obj]
    out = [None] * launch.world_size
    dist.all_gather_object(out, obj)
    return out


@contextmanager
def _reproducible(seed: int, threads: int, launch: Launch) -> Iterator[np.random.Generator]:
    """Seeds, threads and deterministic algorithms for the duration of a training; yields this rank's
    window generator, seeded by (seed, rank)."""
    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    cuda = launch.device.type == "cuda"
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=cuda)  # a few CUDA kernels have no deterministic version
    torch.manual_seed(seed)
    try:
        yield np.random.default_rng((seed, launch.rank))
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])


def split_years(years: list[int]) -> tuple[list[int], list[int]]:
    """(training target years, held-out years): the first year has no previous map to learn from."""
    if len(years) < VALIDATION_YEARS + 2:
        raise ValueError(f"need at least {VALIDATION_YEARS + 2} years of maps to train, got {len(years)}")
    return years[1:-VALIDATION_YEARS], years[-VALIDATION_YEARS:]


def _local_batch(batch_size: int, launch: Launch) -> int:
    if batch_size % launch.world_size:
        raise ValueError(f"batch size {batch_size} does not split evenly over {launch.world_size} processes")
    return batch_size // launch.world_size


# ---------------------------------------------------------------- training windows


class Window(NamedTuple):
    rows: slice
    cols: np.ndarray
    flips: np.ndarray  # flip rows, flip columns, transpose


def windows_touching(mask: np.ndarray, tile: int, wrap_lon: bool) -> np.ndarray:
    """Whether the tile × tile window starting at each (row, column) holds a cell of ``mask`` (H, W):
    (H − tile + 1, W) with longitude wrapping, else (H − tile + 1, W − tile + 1)."""
    m = np.concatenate([mask, mask[:, :tile - 1]], axis=1) if wrap_lon else mask
    s = np.pad(m.astype(np.int64).cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))  # summed-area table
    return (s[tile:, tile:] - s[:-tile, tile:] - s[tile:, :-tile] + s[:-tile, :-tile]) > 0


class WindowSampler:
    """Random training windows of ``tile`` × ``tile`` centred on the ``centres`` pixels (clipped to the
    grid), none touching the ``excluded`` pixels, each with a random flip or transpose."""

    def __init__(self, centres: np.ndarray, excluded: np.ndarray, tile: int, rng: np.random.Generator, *, wrap_lon: bool):
        h, w = centres.shape
        side = h if wrap_lon else min(h, w)
        self.tile = min(tile, side - side % UNet.DOWNSAMPLING)
        rows, cols = np.nonzero(centres)
        j0 = np.clip(rows - self.tile // 2, 0, h - self.tile)
        i0 = (cols - self.tile // 2) % w if wrap_lon else np.clip(cols - self.tile // 2, 0, w - self.tile)
        clear = ~windows_touching(excluded, self.tile, wrap_lon)[j0, i0]
        if not clear.any():
            raise ValueError(f"no {self.tile}x{self.tile} training window misses the held-out region")
        self.starts = j0[clear], i0[clear]
        self.width, self.rng = w, rng

    def __call__(self) -> Window:
        k = self.rng.integers(self.starts[0].size)
        j0, i0 = int(self.starts[0][k]), int(self.starts[1][k])
        return Window(slice(j0, j0 + self.tile), (i0 + np.arange(self.tile)) % self.width, self.rng.random(3) < 0.5)


def _take(array: np.ndarray, window: Window, transposed_channels=None) -> np.ndarray:
    """The window of ``array`` (..., H, W) under one of the 8 symmetries of the square.

    ``transposed_channels``: channel order to use when the window is transposed (swaps
    channels that name an axis).
    """
    out = array[..., window.rows, :][..., window.cols]
    if window.flips[0]:
        out = out[..., ::-1, :]
    if window.flips[1]:
        out = out[..., ::-1]
    if window.flips[2]:
        out = np.swapaxes(out, -1, -2)
        if transposed_channels is not None:
            out = out[transposed_channels]
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------- the loop


def _validation_loss(items: list, item_loss: Callable[[object], tuple[float, float]], launch: Launch) -> float:
    """Weighted mean of ``item_loss(item) = (mean loss, weight)`` over ``items``, which the ranks share;
    summed in item order, so the same float on every rank (and for any world size)."""
    mine = [item_loss(item) for item in items[launch.rank::launch.world_size]]
    parts = _all_gather(mine, launch)
    terms = [parts[i % launch.world_size][i // launch.world_size] for i in range(len(items))]
    return sum(loss * weight for loss, weight in terms) / max(sum(weight for _, weight in terms), 1e-300)


def _fit(emulator: Emulator, batch_loss, validation_items: list, item_loss, launch: Launch, *, epochs: int,
         steps_per_epoch: int, lr: float, weight_decay: float, patience: int, progress: bool) -> dict:
    """AdamW, linear warm-up then cosine decay, gradients averaged over the ranks; keeps the weights of
    the best validation loss. ``batch_loss(network)``: the loss of a batch of this rank. Returns the history."""
    model = emulator.model.to(launch.device)
    network = model
    if launch.backend is not None:
        network = DistributedDataParallel(model, device_ids=[launch.device.index] if launch.device.type == "cuda" else None)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total, warmup = epochs * steps_per_epoch, max(1, epochs * steps_per_epoch // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + np.cos(np.pi * step / total)))
    best, best_state, since_best, history = float("inf"), None, 0, []
    bar = tqdm(total=total, disable=not (progress and launch.is_main), desc=f"train {emulator.kind}", unit="step")
    for epoch in range(epochs):
        network.train()
        running = 0.0
        for _ in range(steps_per_epoch):
            loss = batch_loss(network)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            running += loss.item()
            bar.update()
        model.eval()
        train_loss = float(np.mean(_all_gather(running / steps_per_epoch, launch)))
        val = _validation_loss(validation_items, item_loss, launch)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val:.4f}")
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


def _training_meta(launch: Launch, holdout_region: Region, **settings) -> dict:
    return {**settings, "holdout_region": asdict(holdout_region), "world_size": launch.world_size,
            "backend": launch.backend, "device": launch.device.type}


# ---------------------------------------------------------------- land use


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (F.cross_entropy(logits, target, reduction="none") * weight).sum() / weight.sum().clamp_min(1.0)


def train_landuse(world_dir: str | Path, out_dir: str | Path, *, epochs: int = 40, seed: int = 0, threads: int = 2,
                  steps_per_epoch: int = 50, batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 1e-3,
                  patience: int = 8, widths=(16, 32, 64, 96), tile: int = 64, active_weight: float = 4.0, name: str = LANDUSE_NAME,
                  holdout_region: Region = HOLDOUT_REGION, launch: Launch = Launch(), progress: bool = True) -> dict | None:
    """Train the land-use U-Net on a world directory; rank 0 writes ``out_dir/<name>.{safetensors,json}``
    and returns the metadata's ``metrics`` (the other ranks return None)."""
    start = time.perf_counter()
    local_batch = _local_batch(batch_size, launch)
    with WorldData.open(world_dir) as world, _reproducible(seed, threads, launch) as rng:
        train_years, val_years = split_years(world.years)
        grid, area = world.fine_grid, world.fine_grid.cell_area_weights()
        seen = training_pixels(world, holdout_region)
        maps = {t: world.lulc(t) for t in world.years}
        raw = {t: landuse_features(world.scenario_groups_fine(t), world.static, maps[t - 1], area, world.factor, STATIC_NAMES)
               for t in train_years + val_years}
        n_onehot = len(LANDUSE_CLASSES)  # the previous map's one-hot closes the input channels
        continuous = np.stack([raw[t][:-n_onehot, seen] for t in train_years])
        mean = np.concatenate([continuous.mean(axis=(0, 2)), np.zeros(n_onehot)])
        std = np.concatenate([np.maximum(continuous.std(axis=(0, 2)), 1e-6), np.ones(n_onehot)])
        emulator = LandUseEmulator.create(static_names=STATIC_NAMES, film_names=BIOCLIM_NAMES, coarse_factor=world.factor,
                                          fine_resolution_deg=grid.dlat,
                                          mean=mean, std=std, widths=widths, tile_size=tile)
        inputs = {t: emulator.normalise(r) for t, r in raw.items()}
        targets = {t: np.maximum(CLASS_INDEX[maps[t]], 0) for t in raw}  # NODATA pixels weigh 0
        active = {t: np.any(np.abs(r[DEMAND]) > 0.25 / world.factor**2, axis=0) for t, r in raw.items()}
        weights = {t: ((seen & (maps[t] != NODATA)) * (1.0 + (active_weight - 1.0) * a)).astype(np.float32)
                   for t, a in active.items()}
        del raw, continuous
        sample = WindowSampler(world.land_mask, region_mask(grid, holdout_region), tile, rng, wrap_lon=grid.is_global)
        transposed = np.arange(emulator.in_channels)  # a transpose swaps cell_row and cell_col
        row, col = emulator.channels.index("cell_row"), emulator.channels.index("cell_col")
        transposed[[row, col]] = [col, row]

        def batch_loss(network):
            picks = [(train_years[rng.integers(len(train_years))], sample()) for _ in range(local_batch)]
            x = np.stack([_take(inputs[t], win, transposed) for t, win in picks])
            y = np.stack([_take(targets[t], win) for t, win in picks])
            w = np.stack([_take(weights[t], win) for t, win in picks])
            return weighted_ce(network(torch.from_numpy(x).to(launch.device)), torch.from_numpy(y).to(launch.device),
                               torch.from_numpy(w).to(launch.device))

        def year_loss(year):
            logits = torch.from_numpy(blended_output(emulator, inputs[year], wrap_lon=grid.is_global))
            w = torch.from_numpy(weights[year])
            return weighted_ce(logits[None], torch.from_numpy(targets[year])[None], w[None]).item(), float(w.sum())

        history = _fit(emulator, batch_loss, val_years, year_loss, launch, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       lr=lr, weight_decay=weight_decay, patience=patience, progress=progress)
        if not launch.is_main:
            return None
        wall_time = round(time.perf_counter() - start, 1)
        metrics = evaluate_landuse(emulator, world, make_splits(world, val_years, holdout_region), progress=progress)
        emulator.meta.update({
            "name": name,
            "training": _training_meta(launch, holdout_region, seed=seed, threads=threads, epochs=epochs,
                                       steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                       patience=patience, active_weight=active_weight, train_years=train_years,
                                       validation_years=val_years, wall_time_s=wall_time, **history),
            "training_data": {k: v for k, v in world.sha256().items() if k in ("static.nc", "bioclim.nc", "luh2_states.nc", "lulc_maps.nc")},
            "metrics": metrics,
        })
        emulator.save(Path(out_dir) / name)
    return metrics


# ---------------------------------------------------------------- LAI


def masked_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (((pred - target) ** 2) * weight).sum() / weight.sum().clamp_min(1.0)


def train_lai(world_dir: str | Path, out_dir: str | Path, *, epochs: int = 30, seed: int = 0, threads: int = 2,
              steps_per_epoch: int = 50, batch_size: int = 16, lr: float = 3e-3, weight_decay: float = 1e-3, patience: int = 8,
              widths=(16, 32, 64, 96), tile: int = 64, name: str = LAI_NAME, holdout_region: Region = HOLDOUT_REGION,
              launch: Launch = Launch(), progress: bool = True) -> dict | None:
    """Train the LAI U-Net (inputs: one-hot of the observed map, drivers, season); as :func:`train_landuse`."""
    start = time.perf_counter()
    local_batch = _local_batch(batch_size, launch)
    with WorldData.open(world_dir) as world, _reproducible(seed, threads, launch) as rng:
        train_years, val_years = split_years(world.years)
        train_years = [world.years[0]] + train_years  # LAI needs no previous map
        grid = world.fine_grid
        seen = training_pixels(world, holdout_region)
        maps = {y: world.lulc(y) for y in world.years}
        onehot = {y: one_hot_classes(m) for y, m in maps.items()}
        weights = {y: (seen & (m != NODATA)).astype(np.float32) for y, m in maps.items()}
        drivers = {(y, m): world.drivers(y, m) for y in world.years for m in range(1, 13)}
        lai = {(y, m): world.lai(y, m) for y in world.years for m in range(1, 13)}
        train_keys = [(y, m) for y in train_years for m in range(1, 13)]
        stacked = np.stack([drivers[k][:, seen] for k in train_keys])
        n_frac = len(LANDUSE_CLASSES)
        mean = np.concatenate([np.zeros(n_frac), stacked.mean(axis=(0, 2)), np.zeros(2)])
        std = np.concatenate([np.ones(n_frac), stacked.std(axis=(0, 2)), np.ones(2)])
        emulator = LaiEmulator.create(fine_resolution_deg=grid.dlat, mean=mean, std=std, widths=widths, tile_size=tile)
        sample = WindowSampler(world.land_mask, region_mask(grid, holdout_region), tile, rng, wrap_lon=grid.is_global)

        def inputs_of(key):
            return emulator.inputs(onehot[key[0]], drivers[key], MID_MONTH_DOY[key[1] - 1])

        def batch_loss(network):
            picks = [(train_keys[rng.integers(len(train_keys))], sample()) for _ in range(local_batch)]
            x = np.stack([_take(inputs_of(k), win) for k, win in picks])
            y = np.stack([_take(lai[k], win) for k, win in picks])[:, None]
            w = np.stack([_take(weights[k[0]], win) for k, win in picks])[:, None]
            return masked_mse(lai_from_raw(network(torch.from_numpy(x).to(launch.device))),
                              torch.from_numpy(y).to(launch.device), torch.from_numpy(w).to(launch.device))

        def month_loss(key):
            raw = torch.from_numpy(blended_output(emulator, inputs_of(key), wrap_lon=grid.is_global))
            w = torch.from_numpy(weights[key[0]])
            return masked_mse(lai_from_raw(raw)[0], torch.from_numpy(lai[key]), w).item(), float(w.sum())

        val_keys = [(y, m) for y in val_years for m in (1, 4, 7, 10)]
        history = _fit(emulator, batch_loss, val_keys, month_loss, launch, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       lr=lr, weight_decay=weight_decay, patience=patience, progress=progress)
        if not launch.is_main:
            return None
        wall_time = round(time.perf_counter() - start, 1)
        metrics = evaluate_lai(emulator, world, make_splits(world, val_years, holdout_region), train_years, seen,
                               progress=progress)
        emulator.meta.update({
            "name": name,
            "training": _training_meta(launch, holdout_region, seed=seed, threads=threads, epochs=epochs,
                                       steps_per_epoch=steps_per_epoch, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                       patience=patience, train_years=train_years, validation_years=val_years,
                                       wall_time_s=wall_time, **history),
            "training_data": {k: v for k, v in world.sha256().items()
                              if k in ("lulc_maps.nc", "drivers_climatology.nc", "drivers_anomaly.nc", "lai_monthly.nc")},
            "metrics": metrics,
        })
        emulator.save(Path(out_dir) / name)
    return metrics


def main_train(world_dir: str | Path, out_dir: str | Path, kind: str, *, epochs: int | None = None, seed: int = 0,
               threads: int | None = None, device: str = "auto", **settings) -> dict | None:
    """`ai4land train`, in one process or under torchrun: ``kind`` is "landuse", "lai" or "all";
    ``threads`` defaults to 2 // processes (at least 1); ``settings``: more keyword arguments of the
    trainers (steps_per_epoch, batch_size, widths, tile, ...). Returns {kind: metrics} on rank 0, None
    on the other ranks."""
    trainers = {"landuse": train_landuse, "lai": train_lai}
    if kind not in (*trainers, "all"):
        raise ValueError(f"unknown emulator kind '{kind}' (expected landuse, lai or all)")
    kinds = list(trainers) if kind == "all" else [kind]
    with distributed_launch(device) as launch:
        threads = threads or max(1, 2 // launch.world_size)
        metrics = {k: trainers[k](world_dir, out_dir, epochs=epochs or SHIPPED_EPOCHS[k], seed=seed, threads=threads,
                                  launch=launch, **settings) for k in kinds}
    return metrics if launch.is_main else None
