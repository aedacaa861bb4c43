"""Sliding-window inference on a tile lattice fixed in global index space.

The lattice depends only on the fine grid and the tile settings, never on the host's
decomposition. Tiles are grouped into batches of fixed composition, batches are shared
round-robin over the inference ranks, and every rank blends all tiles in tile order with
Gaussian weights (σ = tile/8, as MONAI and nnU-Net). So the result is the same bits for any
number of host or inference ranks.

Tiles start at multiples of the step, itself a multiple of the U-Net's 8× downsampling, so every
tile pools on the same pixel phase as a whole-field pass; the field is padded at its far edges
(wrapped in longitude on a global grid; zeros at the edges of a regional grid) so that the last tile
fits. A tile's prediction then equals the whole-field one wherever the tile holds the pixel's whole
receptive field, and blending only mixes in the cut edges of tiles at small Gaussian weight
(``tests/test_inference.py`` measures this seam).
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
    """Tile starts 0, step, 2·step, …: around the circle, or until a tile reaches the far edge."""
    return tuple(range(0, n if wrap else max(n - tile, 0) + step, step))


def tile_step(tile: int, overlap: float, alignment: int = 8) -> int:
    """Distance between tile starts: tile × (1 − overlap), rounded down to a multiple of ``alignment``."""
    if tile % alignment:
        raise ValueError(f"tile size {tile} is not a multiple of {alignment}")
    return max(alignment, int(tile * (1.0 - overlap)) // alignment * alignment)


def make_lattice(nlat: int, nlon: int, tile: int, overlap: float, wrap_lon: bool) -> TileLattice:
    step = tile_step(tile, overlap)
    return TileLattice(nlat, nlon, tile, _starts(nlat, tile, step, False), _starts(nlon, tile, step, wrap_lon), wrap_lon)


def gaussian_weights(tile: int) -> np.ndarray:
    """Separable Gaussian (sigma = tile/8), clamped away from zero, peak 1."""
    x = np.arange(tile) - (tile - 1) / 2.0
    g = np.exp(-0.5 * (x / (tile / 8.0)) ** 2)
    w = np.outer(g, g)
    return np.maximum(w / w.max(), 1e-3)


def _pad(field: np.ndarray, lat: TileLattice) -> np.ndarray:
    """Pad (C,H,W) at its far edges so that every tile can be cut. A global grid wraps in longitude and
    replicates its last row at the pole; a regional grid pads with zeros (the mean of the normalised
    inputs), as the convolutions do at its near edges."""
    c, h, w = field.shape
    pad_lat = max(lat.lat_starts) + lat.tile - h
    pad_lon = max(lat.lon_starts) + lat.tile - w
    out = np.pad(field, ((0, 0), (0, 0), (0, pad_lon)), mode="wrap" if lat.wrap_lon else "constant")
    return np.pad(out, ((0, 0), (0, pad_lat), (0, 0)), mode="edge" if lat.wrap_lon else "constant")


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
