"""Moving fields between the fine-grid bands (on their slab ranks) and the host's partition.

The fine grid is held in bands of rows (:class:`~.inference.BandLayout`), the host's cells wherever
the host's partition puts them. Every exchange is one ``alltoallv`` over the host's communicator,
routed by tables built once at ``enddef``:

* :meth:`HostExchange.means` — fine fields → area-weighted means on the host's cells. Each band sums
  its own entries (:class:`~.hostmap.Entries`) per host cell, the sums travel to the cells' owners,
  and each owner adds them in band order: the same bits for any decomposition.
* :meth:`HostExchange.to_fine` — host fields → the fine cells of each band (the host's drivers).
* :meth:`HostExchange.gather_rows` — a slab field → the whole grid on one rank (the history file).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .comm import Communicator
from .compiled import in_blocks, kernel, zeros
from .hostmap import Entries, HostMap, fine_from_host
from .inference import Band, BandLayout
from .partition import CellDirectory


_ONE = np.ones((1, 1))


@kernel
def _weighted_sums(slot, pixel, up, values, weights, levels, out, first_column, first, end):
    """``out[s, c + l] += Σ w·v`` and ``out[s, c + levels + l] += Σ w`` (c = ``first_column``) over the
    entries [first, end) (slot s, pixel, up) in entry order, with
    ``w = up · weights[l, pixel]`` and ``v = values[l, pixel]``; a field of one level serves every
    level, and ``weights`` of shape (1, 1) is a weight of one. Weights of one level have one sum
    of weights, ``out[s, c + levels]``, that serves every level."""
    per_level_v, per_level_w, per_pixel_w = values.shape[0] > 1, weights.shape[0] > 1, weights.shape[1] > 1
    c = first_column
    for e in range(first, end):
        s, p = slot[e], pixel[e]
        if not per_level_w:  # one weight for every level
            w = up[e] * weights[0, p if per_pixel_w else 0]
            if w == 0.0:  # a zero-weight term changes no sum (never -0)
                continue
            for level in range(levels):
                out[s, c + level] += w * values[level if per_level_v else 0, p]
            out[s, c + levels] += w
            continue
        for level in range(levels):
            w = up[e] * weights[level, p if per_pixel_w else 0]
            if w != 0.0:  # one-hot weights skip most levels
                out[s, c + level] += w * values[level if per_level_v else 0, p]
                out[s, c + levels + level] += w


@kernel
def _one_hot_sums(slot, pixel, up, values, level, levels, out, first_column, first, end):
    """:func:`_weighted_sums` with the one-hot of ``level`` (per pixel; -1 none) as the weights:
    one term per entry instead of one per level, the same sums."""
    per_level_v = values.shape[0] > 1
    c = first_column
    for e in range(first, end):
        s, p = slot[e], pixel[e]
        k = level[p]
        if k >= 0 and up[e] != 0.0:
            out[s, c + k] += up[e] * values[k if per_level_v else 0, p]
            out[s, c + levels + k] += up[e]


def _run(tasks, first, end) -> None:
    """The tasks [first, end) of (kernel, arguments) pairs, in turn (:func:`.compiled.in_blocks`)."""
    for work, arguments in tasks[first:end]:
        work(*arguments)


@dataclass(frozen=True)
class OneHot:
    """Weights that are the one-hot of a map: ``levels`` (rows, W) integers in [0, count), -1 for none."""

    levels: np.ndarray
    count: int


@kernel
def _cell_means(flat, base, cell_start, contrib_rank, contrib_row, nsums, column, levels, shared, out_row, out,
                first, end):
    """Cells [first, end) of ``out``: each cell's sums, the rows of its contributions added to 0 in
    band order (cell c's are [cell_start[c], cell_start[c + 1]): row ``contrib_row`` of the message
    of rank ``contrib_rank``, which starts at ``base[rank]`` of ``flat``, rows of ``nsums``); then for
    each field f, ``out[out_row[f] + l, c]`` = its sum of values over its sum of weights (columns
    from ``column[f]``: ``levels[f]`` sums of values, then one sum of weights if ``shared[f]``, else
    one per level), 0 where that is not > 0."""
    total = np.empty(nsums)
    for cell in range(first, end):
        total[:] = 0.0
        for j in range(cell_start[cell], cell_start[cell + 1]):
            start = base[contrib_rank[j]] + contrib_row[j] * nsums
            for k in range(nsums):
                total[k] += flat[start + k]
        for f in range(column.size):
            c, n = column[f], levels[f]
            for level in range(n):
                den = total[c + n + (0 if shared[f] else level)]
                out[out_row[f] + level, cell] = total[c + level] / den if den > 0 else 0.0


@dataclass
class _BandCells:
    band: Band
    entries: Entries
    cells: np.ndarray  # the host cells the band touches, sorted
    inverse: np.ndarray  # entry → index into cells
    to_rank: dict[int, np.ndarray]  # owner rank → indices into cells that it owns
    slot: np.ndarray  # entry → row of the slab's sums (:attr:`HostExchange.send_rows`)
    position: np.ndarray  # cell → its index among its owner's cells


class HostExchange:
    """Routes between this rank's bands (``slab`` of ``layout``, -1 for none) and its host cells,
    whose ranks and places the :class:`~.partition.CellDirectory` knows; collective at construction."""

    def __init__(self, comm: Communicator, host_map: HostMap, layout: BandLayout, slab: int, slab_ranks,
                 directory: CellDirectory):
        self.comm, self.layout, self.slab, self.slab_ranks = comm, layout, slab, list(slab_ranks)
        self.nlon = layout.lattice.nlon
        self.nlocal = directory.nlocal
        touched = []
        for band in layout.slab_bands(slab) if slab >= 0 else []:
            e = host_map.entries(*band.rows)
            touched.append((band, e, *np.unique(e.cell, return_inverse=True)))
        owner, position = directory.lookup(np.concatenate([t[2] for t in touched] or [np.empty(0, np.int64)]))
        bands, start = [], 0
        for band, e, cells, inverse in touched:
            band_owner, band_position = owner[start:start + cells.size], position[start:start + cells.size]
            start += cells.size
            to_rank = {int(r): np.flatnonzero(band_owner == r) for r in np.unique(band_owner)}
            bands.append((band, e, cells, inverse, to_rank, np.empty(cells.size, dtype=np.int64), band_position))
        # The rows of the slab's sums: each owner's cells in turn, band by band (one message each).
        self.send_rows: dict[int, tuple[int, int]] = {}
        start = 0
        for rank in sorted({r for *_, to_rank, _, _ in bands for r in to_rank}):
            first = start
            for *_, to_rank, row_of_cell, _ in bands:
                if rank in to_rank:
                    index = to_rank[rank]
                    row_of_cell[index] = np.arange(start, start + index.size)
                    start += index.size
            self.send_rows[rank] = (first, start)
        self.bands = [_BandCells(band, e, cells, inverse, to_rank, row_of_cell[inverse], band_position)
                      for band, e, cells, inverse, to_rank, row_of_cell, band_position in bands]
        # The slab's entries, band after band, their pixels counted from the slab's first row.
        first_row = layout.slab_rows(slab)[0] if self.bands else 0
        self.slot = np.concatenate([b.slot for b in self.bands] or [np.empty(0, np.int64)])
        self.pixel = np.concatenate([b.entries.pixel + (b.band.rows[0] - first_row) * self.nlon for b in self.bands]
                                    or [np.empty(0, np.int64)])
        self.up = np.concatenate([b.entries.up for b in self.bands] or [np.empty(0)]).astype(np.float64)
        edges = np.cumsum([0] + [b.entries.pixel.size for b in self.bands])
        self.band_entries = list(zip(edges[:-1].tolist(), edges[1:].tolist()))  # each band's [first, end) entries
        # Tell each owner which of its cells each band sends, in band order: [band, count, positions…]…
        send = [[] for _ in range(comm.size)]
        for b in self.bands:
            for rank, index in b.to_rank.items():
                send[rank].append(np.concatenate([[b.band.index, index.size], b.position[index]]))
        received = comm.alltoallv([np.concatenate(m) if m else np.empty(0) for m in send], np.int64)
        self.incoming: list[tuple[int, int, np.ndarray]] = []  # (band, sending rank, local positions)
        for rank, message in enumerate(received):
            k = 0
            while k < message.size:
                band, count = int(message[k]), int(message[k + 1])
                self.incoming.append((band, rank, message[k + 2:k + 2 + count]))
                k += 2 + count
        self.incoming.sort(key=lambda item: item[0])  # canonical order: band
        # Each local cell's contributions, in band order: (sending rank, row of that rank's message).
        rows_before = np.zeros(comm.size, dtype=np.int64)
        cell, rank_of, row_of = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        for _, rank, positions in self.incoming:
            cell.append(positions)
            rank_of.append(np.full(positions.size, rank, dtype=np.int64))
            row_of.append(rows_before[rank] + np.arange(positions.size))
            rows_before[rank] += positions.size
        cell = np.concatenate(cell)
        order = np.argsort(cell, kind="stable")
        self.cell_start = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=self.nlocal))]).astype(np.int64)
        self.contrib_rank, self.contrib_row = np.concatenate(rank_of)[order], np.concatenate(row_of)[order]

    def means(self, fields: list[tuple[np.ndarray | None, np.ndarray | None]]) -> list[np.ndarray]:
        """For each (values (L or 1, rows, W), weights (L or 1, rows, W), :class:`OneHot` or None) on
        this rank's slab (both None on a rank without one): the mean of the values over each of this
        rank's host cells, weighted by area (the host map's ``up``) times ``weights``, (L, local
        cells); 0 where the weights vanish. A field of one level serves all L. Collective."""
        # (levels, whether one sum of weights serves them all) of each field, agreed by all ranks
        spec = [(max(v.shape[0], 0 if w is None else w.count if isinstance(w, OneHot) else w.shape[0]),
                 not isinstance(w, OneHot) and (w is None or w.shape[0] == 1)) for v, w in fields] if self.bands else None
        spec = next((s for s in self.comm.allgather(spec) if s is not None), None)
        if spec is None:  # no rank holds a band: nothing is mapped
            return [np.zeros((len(fields), self.nlocal)) for _ in fields]
        width = [n + (1 if shared else n) for n, shared in spec]  # columns of the sums of each field
        nsums = sum(width)
        sums = zeros((max((end for _, end in self.send_rows.values()), default=0), nsums))
        k = 0
        first, end = self.layout.slab_rows(self.slab)
        tasks = []  # (kernel, its arguments) per field and band: each band has its own rows of the sums
        for (n, _), columns, (values, weights) in (zip(spec, width, fields) if self.bands else ()):
            for array in (values, weights.levels[None] if isinstance(weights, OneHot) else weights):
                if array is not None and array.shape[1:] != (end - first, self.nlon):
                    raise ValueError(f"a field of shape {array.shape} is not on this slab's {end - first}x{self.nlon} cells")
            entries = (self.slot, self.pixel, self.up, values.reshape(values.shape[0], -1))
            if isinstance(weights, OneHot):
                sums_of, weights = _one_hot_sums, weights.levels.reshape(-1)
            else:
                sums_of, weights = _weighted_sums, _ONE if weights is None else weights.reshape(weights.shape[0], -1)
            tasks += [(sums_of, (*entries, weights, n, sums, k, lo, hi)) for lo, hi in self.band_entries]
            k += columns
        in_blocks(_run, len(tasks), tasks)
        mine = self.send_rows.get(self.comm.rank)
        send = [np.empty(0)] * self.comm.size
        for rank, (start, end) in self.send_rows.items():
            if rank != self.comm.rank:
                send[rank] = sums[start:end].ravel()
        received = self.comm.alltoallv(send, np.float64)
        if mine is not None:  # this rank's own cells: no message
            received[self.comm.rank] = sums[mine[0]:mine[1]].ravel()
        flat = received[0] if len(received) == 1 else np.concatenate(received)
        base = np.concatenate([[0], np.cumsum([r.size for r in received])[:-1]]).astype(np.int64)
        levels = np.array([n for n, _ in spec], dtype=np.int64)
        out_row = np.concatenate([[0], np.cumsum(levels)[:-1]]).astype(np.int64)
        out = np.empty((int(levels.sum()), self.nlocal))
        in_blocks(_cell_means, self.nlocal, flat, base, self.cell_start, self.contrib_rank, self.contrib_row, nsums,
                  np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int64), levels,
                  np.array([shared for _, shared in spec]), out_row, out)
        return [out[first:first + n] for first, n in zip(out_row.tolist(), levels.tolist())]

    def to_fine(self, host: np.ndarray) -> np.ndarray | None:
        """Host values (L, local cells) → (L, rows, W) on this rank's slab (None without one), each fine
        cell the ``down``-weighted mean of the host cells that overlap it; NaN where none does."""
        host = np.asarray(host, dtype=np.float64).reshape(-1, self.nlocal)
        send = [[] for _ in range(self.comm.size)]
        for _, rank, positions in self.incoming:
            send[rank].append(host[:, positions].ravel())
        received = self.comm.alltoallv([np.concatenate(m) if m else np.empty(0) for m in send], np.float64)
        if not self.bands:
            return None
        offsets = {rank: 0 for rank in range(self.comm.size)}
        out = []
        for b in self.bands:  # the order in which the owners listed this rank's bands
            values = np.zeros((host.shape[0], b.cells.size))
            for rank, index in sorted(b.to_rank.items()):
                size = host.shape[0] * index.size
                values[:, index] = received[rank][offsets[rank]:offsets[rank] + size].reshape(host.shape[0], -1)
                offsets[rank] += size
            npix = (b.band.rows[1] - b.band.rows[0]) * self.nlon
            out.append(np.stack([fine_from_host(b.entries, v[b.inverse], npix) for v in values])
                       .reshape(host.shape[0], -1, self.nlon))
        return np.concatenate(out, axis=1)

    def gather_rows(self, field: np.ndarray | None, root: int = 0) -> np.ndarray | None:
        """This rank's slab of a (..., rows, W) field → the whole grid on ``root`` (None elsewhere, and
        when the field is not there yet)."""
        first = self.layout.slab_rows(self.slab)[0] if self.bands else 0
        parts = self.comm.gather((first, field) if self.bands and field is not None else None, root)
        if parts is None:
            return None
        held = sorted((p for p in parts if p is not None), key=lambda p: p[0])
        return np.concatenate([f for _, f in held], axis=-2) if held else None
