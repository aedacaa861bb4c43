"""Sliding-window inference on a tile lattice fixed in global index space.

The lattice depends only on the fine grid and the tile settings, never on the host's
decomposition. Tiles are grouped into batches of fixed composition, batches are shared
round-robin over the inference ranks, and every rank blends all tiles in tile order with
Gaussian weights. So the result is the same bits for any number of host or inference ranks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .comm import Communicator


@dataclass(frozen=True)
class TileLattice:
    nlat: int
    nlon: int
    tile: int
    lat_starts: tuple[int, ...]
    lon_starts: tuple[int, ...]
    wrap_lon: bool

    @property
    def tiles(self) -> list[tuple[int, int]]:
        return [(j, i) for j in self.lat_starts for i in self.lon_starts]


def _starts(n: int, tile: int, step: int, wrap: bool) -> tuple[int, ...]:
    if wrap:
        return tuple(range(0, n, step))
    if n <= tile:
        return (0,)
    starts = list(range(0, n - tile, step)) + [n - tile]  # last window snapped to the edge
    return tuple(sorted(set(starts)))


def make_lattice(nlat: int, nlon: int, tile: int, overlap: float, wrap_lon: bool) -> TileLattice:
    step = max(1, int(round(tile * (1.0 - overlap))))
    return TileLattice(nlat, nlon, tile, _starts(nlat, tile, step, False), _starts(nlon, tile, step, wrap_lon), wrap_lon)


def gaussian_weights(tile: int) -> np.ndarray:
    """Separable Gaussian (sigma = tile/8), clamped away from zero, peak 1."""
    x = np.arange(tile) - (tile - 1) / 2.0
    g = np.exp(-0.5 * (x / (tile / 8.0)) ** 2)
    w = np.outer(g, g)
    return np.maximum(w / w.max(), 1e-3)


def _pad(field: np.ndarray, lat: TileLattice) -> np.ndarray:
    """Pad (C,H,W) so that every tile can be cut: longitude wraps (global) or edge-replicates."""
    c, h, w = field.shape
    pad_lat = max(0, lat.tile - h)
    pad_lon = (max(lat.lon_starts) + lat.tile - w) if lat.wrap_lon else max(0, lat.tile - w)
    mode_lon = "wrap" if lat.wrap_lon else "edge"
    out = np.pad(field, ((0, 0), (0, 0), (0, pad_lon)), mode=mode_lon) if pad_lon > 0 else field
    return np.pad(out, ((0, 0), (0, pad_lat), (0, 0)), mode="edge") if pad_lat > 0 else out


def tiled_predict(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray,
    *,
    tile: int,
    overlap: float,
    wrap_lon: bool,
    comm: Communicator,
    inference_index: int,
    n_inference: int,
    batch_size: int = 8,
) -> np.ndarray:
    """Predict (K,H,W) from inputs (C,H,W); collective over ``comm``.

    ``predict_batch`` maps (B,C,tile,tile) float32 → (B,K,tile,tile) float32 and is only called on
    inference ranks (``inference_index >= 0``). Every rank returns the full blended field.
    """
    _, h, w = inputs.shape
    lattice = make_lattice(h, w, tile, overlap, wrap_lon)
    padded = _pad(np.ascontiguousarray(inputs, dtype=np.float32), lattice)
    tiles = lattice.tiles
    batches = [tiles[k:k + batch_size] for k in range(0, len(tiles), batch_size)]
    mine = {}
    if inference_index >= 0:
        for b in range(inference_index, len(batches), n_inference):
            x = np.stack([padded[:, j:j + tile, i:i + tile] for j, i in batches[b]])
            mine[b] = np.asarray(predict_batch(x), dtype=np.float32)
    done: dict[int, np.ndarray] = {}
    for part in comm.allgather(mine):
        done.update(part)
    if len(done) != len(batches):
        raise RuntimeError(f"only {len(done)} of {len(batches)} tile batches were computed")

    weights = gaussian_weights(tile)
    k = next(iter(done.values())).shape[1]
    hp, wp = padded.shape[1:]
    acc = np.zeros((k, hp, wp), dtype=np.float64)
    norm = np.zeros((hp, wp), dtype=np.float64)
    for b, batch in enumerate(batches):  # canonical order: tile index
        for n, (j, i) in enumerate(batch):
            acc[:, j:j + tile, i:i + tile] += weights * done[b][n]
            norm[j:j + tile, i:i + tile] += weights
    for offset in range(w, wp, w) if lattice.wrap_lon else ():  # fold wrapped columns back
        n = min(w, wp - offset)
        acc[:, :, :n] += acc[:, :, offset:offset + n]
        norm[:, :n] += norm[:, offset:offset + n]
    return (acc[:, :h, :w] / norm[:h, :w]).astype(np.float32)
