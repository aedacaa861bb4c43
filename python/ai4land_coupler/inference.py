"""Sliding-window inference on a tile lattice fixed in global index space, distributed in bands.

The lattice depends only on the fine grid and the tile settings, never on the host's
decomposition. The fine grid is cut into **bands** of whole rows, also fixed in global index
space; a tile belongs to the band that holds its first row. Contiguous runs of bands (**slabs**)
are dealt to the inference ranks, each of which holds only its slab of the fine-grid state.
Predicting a field takes two exchanges (``alltoallv``): the input rows that a slab's tiles reach
beyond the slab (the halo) come from the slabs that hold them, and each band's Gaussian-weighted
sums (σ = tile/8, as MONAI and nnU-Net) go to the bands they overlap. Tiles are batched per band
(fixed composition), every band sums its tiles in tile order, and every band adds the sums it
receives in band order, so the result is the same bits for any number of host or inference ranks.

Tiles start at multiples of the step, itself a multiple of the U-Net's 8× downsampling, so every
tile pools on the same pixel phase as a whole-field pass. A slab's field (its inputs, written
where the emulator made them, and its halo) is completed in place past the grid's far edges
(wrapped in longitude and the last row repeated on a global grid; zeros on a regional grid) so
that the last tiles fit, and a row of tiles is a strided view of it (no copy). A tile's
prediction then equals the whole-field one wherever the tile holds the pixel's whole receptive
field, and blending only mixes in the cut edges of tiles at small Gaussian weight
(``tests/test_inference.py`` measures this seam).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .comm import Communicator, SerialComm, collective
from .compiled import in_blocks, kernel


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


@functools.lru_cache(maxsize=8)
def gaussian_weights(tile: int) -> np.ndarray:
    """Separable Gaussian (sigma = tile/8), clamped away from zero, peak 1; float32, as the tile
    sums it weights (read-only, made once)."""
    x = np.arange(tile) - (tile - 1) / 2.0
    g = np.exp(-0.5 * (x / (tile / 8.0)) ** 2)
    w = np.outer(g, g)
    w = np.maximum(w / w.max(), 1e-3).astype(np.float32)
    w.flags.writeable = False
    return w


@dataclass(frozen=True)
class Band:
    index: int
    rows: tuple[int, int]  # [first, end) fine rows
    tiles: tuple[tuple[int, int], ...]  # origins (row, column) of the tiles whose first row it holds, in tile order
    reach: int  # end of the rows its tiles cover (may pass the grid's last row: padding)


class BandLayout:
    """Bands of ``band_rows`` fine rows on a tile lattice, in ``n_slabs`` contiguous slabs that balance
    the tiles (inference) and the rows (post-processing) between them."""

    def __init__(self, lattice: TileLattice, band_rows: int, n_slabs: int):
        if band_rows < 1 or n_slabs < 1:
            raise ValueError(f"band_rows ({band_rows}) and n_slabs ({n_slabs}) must be positive")
        self.lattice, self.band_rows, self.n_slabs = lattice, band_rows, n_slabs
        self.bands: list[Band] = []
        for index, first in enumerate(range(0, lattice.nlat, band_rows)):
            end = min(first + band_rows, lattice.nlat)
            tiles = tuple((j, i) for j, i in lattice.tiles if first <= j < end)
            self.bands.append(Band(index, (first, end), tiles, max([end] + [j + lattice.tile for j, _ in tiles])))
        cost = np.array([len(b.tiles) * lattice.tile ** 2 + (b.rows[1] - b.rows[0]) * lattice.nlon
                         for b in self.bands], dtype=np.float64)
        middle = (np.cumsum(cost) - cost / 2) / cost.sum()
        self.slab_of_band = np.minimum((middle * n_slabs).astype(np.int64), n_slabs - 1)
        self._weights: dict[tuple[str, int], np.ndarray] = {}

    def slab_bands(self, slab: int) -> list[Band]:
        return [b for b in self.bands if self.slab_of_band[b.index] == slab]

    def slab_rows(self, slab: int) -> tuple[int, int]:
        """[first, end) fine rows of a slab; empty (first == end) for a slab without bands."""
        bands = self.slab_bands(slab)
        if not bands:
            first = next((b.rows[0] for b in self.bands if self.slab_of_band[b.index] > slab), self.lattice.nlat)
            return first, first
        return bands[0].rows[0], bands[-1].rows[1]

    def slab_reach(self, slab: int) -> int:
        return max([self.slab_rows(slab)[1]] + [b.reach for b in self.slab_bands(slab)])

    def band_weights(self, band: Band) -> np.ndarray:
        """The Gaussian weights of a band's tiles summed in tile order, (rows, W) over the grid rows
        [band's first, reach), wrapped columns folded back: what :func:`_band_sums` sums are
        weighted by. Depends on the layout alone: made once (read-only)."""
        key = ("band", band.index)
        if key not in self._weights:
            lat, top = self.lattice, band.rows[0]
            weights = gaussian_weights(lat.tile)
            total = np.zeros((band.reach - top, max(lat.lon_starts) + lat.tile))
            for row, col in band.tiles:
                total[row - top:row - top + lat.tile, col:col + lat.tile] += weights
            self._weights[key] = _folded(total[None], lat)[0]
            self._weights[key].flags.writeable = False
        return self._weights[key]

    def blend_weights(self, dest: Band, tensor: bool = False) -> np.ndarray | torch.Tensor:
        """(rows, W) float32, the :meth:`band_weights` of every band that overlaps ``dest``, added in
        band order: what :func:`blend` divides ``dest``'s sums by. Made once (read-only); as a
        torch tensor (not to be written) with ``tensor``."""
        key = ("blend", dest.index)
        if tensor:
            if ("tensor",) + key not in self._weights:
                self._weights[("tensor",) + key] = torch.tensor(self.blend_weights(dest))
            return self._weights[("tensor",) + key]
        if key not in self._weights:
            total = np.zeros((dest.rows[1] - dest.rows[0], self.lattice.nlon))
            for source in self.bands:
                for other, (first, end) in _pieces(self, source):
                    if other.index == dest.index:
                        total[first - dest.rows[0]:end - dest.rows[0]] += \
                            self.band_weights(source)[first - source.rows[0]:end - source.rows[0]]
            total = total.astype(np.float32)
            total.flags.writeable = False
            self._weights[key] = total
        return self._weights[key]


def make_layout(nlat: int, nlon: int, *, tile: int, overlap: float, wrap_lon: bool, band_rows: int,
                n_slabs: int) -> BandLayout:
    return BandLayout(make_lattice(nlat, nlon, tile, overlap, wrap_lon), band_rows, n_slabs)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return max(a[0], b[0]), min(a[1], b[1])


def _halo(inputs: np.ndarray | None, layout: BandLayout, comm: Communicator, slab: int, slab_ranks,
          channels: np.ndarray) -> list[np.ndarray] | None:
    """This slab's inputs, then the pieces (those ``channels``) of the rows its tiles reach in the
    following slabs; collective."""
    nlat = layout.lattice.nlat
    send = [np.empty(0, np.float32) for _ in range(comm.size)]
    for other, rank in enumerate(slab_ranks):
        if other == slab or inputs is None:
            continue
        rows = layout.slab_rows(slab)
        wanted = (layout.slab_rows(other)[1], min(layout.slab_reach(other), nlat))
        first, end = _overlap(wanted, rows)
        if first < end:
            send[rank] = inputs[channels, first - rows[0]:end - rows[0]]
    received = comm.alltoallv(send, np.float32)
    if inputs is None:
        return None
    rows = layout.slab_rows(slab)
    wanted = (rows[1], min(layout.slab_reach(slab), nlat))
    pieces = [inputs]
    for other, rank in enumerate(slab_ranks):
        first, end = _overlap(wanted, layout.slab_rows(other))
        if other != slab and first < end:
            pieces.append(received[rank].reshape(channels.size, end - first, inputs.shape[2]))
    return pieces


@kernel
def _complete(field, rows, width, wrap, channels, start, end):
    """The ``channels[start:end]`` of ``field`` (C, R, Wc), whose first ``rows`` rows hold the grid's
    first ``width`` columns, completed in place as the tiles that pass the grid's far edges need
    it. Beyond the last column: the columns from the start on a global grid (longitude wraps),
    zero on a regional one (the mean of the normalised inputs, as the convolutions pad at the
    near edges); beyond the last row: that row on a global grid (the pole), zero on a regional one."""
    total_rows, total_width = field.shape[1], field.shape[2]
    for k in channels[start:end]:
        for y in range(rows):
            x = width
            while x < total_width:
                n = min(total_width - x, width)
                if wrap:
                    field[k, y, x:x + n] = field[k, y, :n]
                else:
                    field[k, y, x:x + n] = 0.0
                x += n
        for y in range(rows, total_rows):
            if wrap:
                field[k, y, :] = field[k, rows - 1, :]
            else:
                field[k, y, :] = 0.0


def _field_shape(layout: BandLayout, slab: int) -> tuple[int, int]:
    """(rows, columns) of a slab's :func:`with_halo` field: every grid row and column its tiles reach."""
    lat = layout.lattice
    return layout.slab_reach(slab) - layout.slab_rows(slab)[0], max(lat.lon_starts) + lat.tile


def field_buffer(layout: BandLayout, slab: int, channels: int) -> np.ndarray:
    """An empty (channels, rows, columns) float32 array shaped as :func:`with_halo`'s field of
    ``slab``. Write the slab's inputs into ``buffer[:, :slab rows, :nlon]`` (the emulators'
    ``inputs(out=...)`` do) and pass that view on: the halo and the edges are then filled in
    place around them instead of into a copy."""
    return np.empty((channels, *_field_shape(layout, slab)), dtype=np.float32)


def _buffer_of(inputs: np.ndarray, shape: tuple) -> np.ndarray | None:
    """The :func:`field_buffer` of ``shape`` whose leading corner ``inputs`` is, or None."""
    base = inputs.base
    if (isinstance(base, np.ndarray) and base.shape == shape and base.dtype == np.float32 and base.flags.c_contiguous
            and inputs.strides == base.strides and inputs.ctypes.data == base.ctypes.data):
        return base
    return None


def _tiles(field: np.ndarray, rows, cols, tile: int) -> np.ndarray:
    """The (B, C, tile, tile) tiles of a C-ordered ``field`` (C, R, W) whose first cells are
    (rows[n], cols[n]): a strided view of the field when the tiles are evenly spaced in memory
    (a row of tiles: no copy), else a copy. Plain integer arithmetic: this runs between the big
    passes, with the caches cold."""
    rows, cols = [int(r) for r in rows], [int(c) for c in cols]
    if max(rows) + tile > field.shape[1] or max(cols) + tile > field.shape[2] or min(rows + cols) < 0:
        raise ValueError(f"tiles of {tile} at rows {rows}, columns {cols} pass a field of {field.shape}")
    offsets = [r * field.shape[2] + c for r, c in zip(rows, cols)]
    spacing = offsets[1] - offsets[0] if len(offsets) > 1 else 0
    if field.flags.c_contiguous and spacing >= 0 and all(o == offsets[0] + n * spacing for n, o in enumerate(offsets)):
        item = field.itemsize
        return np.ndarray((len(rows), field.shape[0], tile, tile), field.dtype, buffer=field, offset=offsets[0] * item,
                          strides=(spacing * item, *field.strides[:2], item))
    return np.stack([field[:, r:r + tile, c:c + tile] for r, c in zip(rows, cols)])


def _folded(sums: np.ndarray, lat: TileLattice) -> np.ndarray:
    """(K, rows, W) sums over the lattice's columns [0, W + …), with the columns past the grid's
    east edge added to those they wrap onto on a global grid, and cut off."""
    nlon = lat.nlon
    for offset in range(nlon, sums.shape[2], nlon) if lat.wrap_lon else ():
        n = min(nlon, sums.shape[2] - offset)
        torch.from_numpy(sums[:, :, :n]).add_(torch.from_numpy(sums[:, :, offset:offset + n]))  # torch's threads
    return sums[:, :, :nlon]


def _band_sums(predict_batch, field: np.ndarray, first: int, band: Band, layout: BandLayout,
               batch_size: int) -> np.ndarray | None:
    """A band's tiles, cut from the slab's :func:`with_halo` field (grid rows from ``first``),
    predicted in batches of fixed composition and summed in tile order with their
    Gaussian weights: (K, rows, W) float32 over the grid rows [band first row, reach) (the weights'
    sum is :meth:`BandLayout.band_weights`); wrapped columns folded back; None for a band without tiles.
    Each tile is weighted, then added (two roundings, so the same bits in any vector or scalar path
    and at any thread count), by torch's vectorised loops on its own threads."""
    if not band.tiles:
        return None
    lat = layout.lattice
    tile = lat.tile
    weights = _weights_tensor(tile)
    top = band.rows[0]
    one_row = all(row == top for row, _ in band.tiles)  # then the tiles cover the columns in turn
    covered = 0  # with one row of tiles: the columns [0, covered) hold a sum
    sums = weighted = None
    for k in range(0, len(band.tiles), batch_size):
        batch = band.tiles[k:k + batch_size]
        # a batch of one can take another kernel path, whose bits vary with the thread count: doubled
        rows, cols = zip(*(batch * 2 if len(batch) == 1 else batch))
        out = predict_batch(_tiles(field, [row - first for row in rows], cols, tile))
        out = torch.from_numpy(np.ascontiguousarray(out[:len(batch)], dtype=np.float32))
        if sums is None:
            shape = (out.shape[1], band.reach - top, max(lat.lon_starts) + tile)
            sums = torch.empty(shape) if one_row else torch.zeros(shape)
            weighted = torch.empty(out.shape[1:])  # one tile: stays in cache for the add
        for n, (row, col) in enumerate(batch):
            torch.mul(out[n], weights, out=weighted)
            if not one_row:
                sums[:, row - top:row - top + tile, col:col + tile].add_(weighted)
                continue
            # Columns no tile has reached yet get 0 + the tile (one pass, the same bits as adding
            # it to zeros: -0 becomes +0); the others add it.
            if covered < col:  # a gap between tiles (each torch call costs some µs, even on nothing)
                sums[:, :, covered:col].zero_()
            overlap = max(min(covered, col + tile) - col, 0)
            if overlap:
                sums[:, :, col:col + overlap].add_(weighted[:, :, :overlap])
            if overlap < tile:
                torch.add(weighted[:, :, overlap:], 0.0, out=sums[:, :, col + overlap:col + tile])
            covered = max(covered, col + tile)
    if one_row and covered < sums.shape[2]:
        sums[:, :, covered:].zero_()
    return _folded(sums.numpy(), lat)[:, :lat.nlat - top]


@functools.lru_cache(maxsize=8)
def _weights_tensor(tile: int) -> torch.Tensor:
    """:func:`gaussian_weights` as a tensor (not to be written)."""
    return torch.tensor(gaussian_weights(tile))


def predict_slab(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    inputs: np.ndarray | None,
    layout: BandLayout,
    *,
    comm: Communicator,
    slab: int,
    slab_ranks,
    batch_size: int = 8,
) -> np.ndarray | None:
    """Predict (K, rows, W) float32 over this rank's slab from its inputs (C, rows, W); collective over ``comm``.

    ``slab`` is this rank's slab (-1 for a rank without one, which passes ``inputs=None`` and gets
    None) and ``slab_ranks[s]`` the rank of ``comm`` that holds slab ``s``. ``predict_batch`` maps
    (B, C, tile, tile) float32 → (B, K, tile, tile) float32. The three stages, :func:`with_halo`,
    :func:`slab_sums` and :func:`blend`, may also be run apart (the land-use prefetch runs the middle
    one in a background thread).
    """
    field = with_halo(inputs, layout, comm=comm, slab=slab, slab_ranks=slab_ranks)
    sums = collective(comm, lambda: slab_sums(predict_batch, field, layout, slab=slab, batch_size=batch_size))
    return blend(sums, layout, comm=comm, slab=slab, slab_ranks=slab_ranks)


def with_halo(inputs: np.ndarray | None, layout: BandLayout, *, comm: Communicator, slab: int,
              slab_ranks, channels=None) -> np.ndarray | None:
    """The field that this slab's tiles are cut from (C, rows, columns) float32: its inputs (C, slab
    rows, W), then the rows its tiles reach in the following slabs (the halo, received from the
    slabs that hold them; collective), then, past the grid's edges, the completion of
    :func:`_complete`. Into the inputs' own :func:`field_buffer` when they are its leading corner,
    else into a new array. With ``channels`` (channel indices, the same on every rank), only those
    are exchanged and completed: the others are in the buffer already, from an earlier field of
    the same buffer (channels that do not change)."""
    if len(slab_ranks) != layout.n_slabs:
        raise ValueError(f"{len(slab_ranks)} slab ranks for a layout of {layout.n_slabs} slabs")
    field = None
    if inputs is not None:
        first, end = layout.slab_rows(slab)
        want = (end - first, layout.lattice.nlon)
        if inputs.ndim != 3 or inputs.shape[1:] != want:
            raise ValueError(f"slab {slab} inputs have shape {inputs.shape}, expected (channels, {want[0]}, {want[1]})")
        shape = (inputs.shape[0], *_field_shape(layout, slab))
        field = _buffer_of(inputs, shape)
        if field is None:
            inputs = np.ascontiguousarray(inputs, dtype=np.float32)
            if inputs.shape == shape:
                field = inputs
    if channels is not None and field is None and inputs is not None:
        raise ValueError("channels are for inputs written into their field buffer (the others are already there)")
    channels = np.arange(inputs.shape[0] if inputs is not None else 0) if channels is None else np.asarray(channels)
    pieces = _halo(inputs, layout, comm, slab, slab_ranks, channels)
    if pieces is None:
        return None
    if field is None:
        field = np.empty(shape, dtype=np.float32)
        field[:, :want[0], :want[1]] = inputs
    rows = want[0]
    for piece in pieces[1:]:
        field[channels, rows:rows + piece.shape[1], :want[1]] = piece
        rows += piece.shape[1]
    in_blocks(_complete, channels.size, field, rows, want[1], layout.lattice.wrap_lon, channels)
    return field


def slab_sums(predict_batch, field: np.ndarray | None, layout: BandLayout, *, slab: int,
              batch_size: int = 8) -> dict[int, np.ndarray]:
    """The tile sums of this slab's bands (band index → sums) from its :func:`with_halo` field: the
    network, no communication."""
    sums = {}
    if field is not None:
        first = layout.slab_rows(slab)[0]
        for band in layout.slab_bands(slab):
            band_sums = _band_sums(predict_batch, field, first, band, layout, batch_size)
            if band_sums is not None:
                sums[band.index] = band_sums
    return sums


def _pieces(layout: BandLayout, source: Band):
    """(destination band, [first, end) rows) that a source band's sums overlap, in band order."""
    end = min(source.reach, layout.lattice.nlat)
    for dest in layout.bands:
        first, last = _overlap((source.rows[0], end), dest.rows)
        if source.tiles and first < last:
            yield dest, (first, last)


def blend(sums: dict[int, np.ndarray], layout: BandLayout, *, comm: Communicator, slab: int,
          slab_ranks) -> np.ndarray | None:
    """Each band's sums to the bands they overlap (alltoallv), added there in band order, divided by
    the summed weights; this slab's field, or None for a rank without one."""
    send = [[] for _ in range(comm.size)]
    for source_index, block in sums.items():
        source = layout.bands[source_index]
        for dest, (first, end) in _pieces(layout, source):
            owner = slab_ranks[layout.slab_of_band[dest.index]]
            if owner != comm.rank:
                send[owner].append(block[:, first - source.rows[0]:end - source.rows[0]].ravel())
    received = comm.alltoallv([np.concatenate(p) if p else np.empty(0, np.float32) for p in send], np.float32)
    if slab < 0:
        return None
    nlon = layout.lattice.nlon
    incoming: dict[int, list] = {}  # sending rank → [(source, dest, first, end)] in the order sent
    for source in layout.bands:
        owner = slab_ranks[layout.slab_of_band[source.index]]
        for dest, (first, end) in _pieces(layout, source):
            if layout.slab_of_band[dest.index] == slab:
                incoming.setdefault(owner, []).append((source, dest, first, end))
    pieces: dict[int, list] = {}  # dest band → [(first row, sums)] in source band order
    for owner, items in sorted(incoming.items()):
        if owner == comm.rank:
            for source, dest, first, end in items:
                pieces.setdefault(dest.index, []).append(
                    (source.index, first, sums[source.index][:, first - source.rows[0]:end - source.rows[0]]))
            continue
        flat = received[owner]
        levels = flat.size // (nlon * sum(end - first for *_, first, end in items))
        offset = 0
        for source, dest, first, end in items:
            size = levels * (end - first) * nlon
            pieces.setdefault(dest.index, []).append(
                (source.index, first, flat[offset:offset + size].reshape(levels, end - first, nlon)))
            offset += size
    bands = layout.slab_bands(slab)
    if not bands:
        return None
    top = bands[0].rows[0]
    out = None
    for dest in bands:
        parts = sorted(pieces[dest.index], key=lambda p: p[0])
        levels = parts[0][2].shape[0]
        if out is None:
            out = np.empty((levels, bands[-1].rows[1] - top, nlon), dtype=np.float32)
        total = torch.from_numpy(out[:, dest.rows[0] - top:dest.rows[1] - top])  # on torch's threads
        for n, (_, first, block) in enumerate(parts):  # canonical order: source band
            rows = slice(first - dest.rows[0], first - dest.rows[0] + block.shape[1])
            if n == 0:  # 0 + block, in one pass: the same bits as adding it to zeros (-0 becomes +0)
                if rows.start > 0:
                    total[:, :rows.start].zero_()
                torch.add(torch.from_numpy(block), 0.0, out=total[:, rows])
                if rows.stop < total.shape[1]:
                    total[:, rows.stop:].zero_()
            else:
                total[:, rows].add_(torch.from_numpy(block))
        total.div_(layout.blend_weights(dest, tensor=True))
    return out


def tiled_predict(predict_batch: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, *, tile: int, overlap: float,
                  wrap_lon: bool, batch_size: int = 8) -> np.ndarray:
    """Predict (K, H, W) from inputs (C, H, W) over the whole grid in one process (one band)."""
    _, h, w = inputs.shape
    layout = make_layout(h, w, tile=tile, overlap=overlap, wrap_lon=wrap_lon, band_rows=h, n_slabs=1)
    return predict_slab(predict_batch, inputs, layout, comm=SerialComm(), slab=0, slab_ranks=[0], batch_size=batch_size)
