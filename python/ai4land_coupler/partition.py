"""Host partitions as OASIS/YAC define them: a box of a lat-lon grid, or a list of points.

Indices are 0-based here (the Fortran module converts from 1-based). A global cell index on an
``nlat × nlon`` grid is ``g = j * nlon + i`` with ``i`` the longitude column and ``j`` the
latitude row. Local storage order of a box is longitude fastest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .comm import Communicator
from .errors import PartitionError


@dataclass(frozen=True)
class Box:
    """The local block ``[i_offset, i_offset+ni) × [j_offset, j_offset+nj)`` of the host grid."""

    i_offset: int
    j_offset: int
    ni: int
    nj: int

    @property
    def size(self) -> int:
        return self.ni * self.nj

    def global_indices(self, nlat: int, nlon: int) -> np.ndarray:
        if self.ni < 1 or self.nj < 1:
            raise PartitionError(f"box extents must be positive, got ni={self.ni}, nj={self.nj}")
        if self.i_offset < 0 or self.j_offset < 0 or self.i_offset + self.ni > nlon or self.j_offset + self.nj > nlat:
            raise PartitionError(
                f"box i=[{self.i_offset},{self.i_offset + self.ni}) j=[{self.j_offset},{self.j_offset + self.nj}) "
                f"lies outside the host grid of nlon={nlon}, nlat={nlat}"
            )
        j = np.arange(self.j_offset, self.j_offset + self.nj, dtype=np.int64)
        i = np.arange(self.i_offset, self.i_offset + self.ni, dtype=np.int64)
        return (j[:, None] * nlon + i[None, :]).ravel()


@dataclass(frozen=True, eq=False)
class Points:
    """Any set of global cell indices, in the host's own order (e.g. an unstructured grid)."""

    indices: np.ndarray

    def __post_init__(self):
        indices = np.asarray(self.indices)
        if indices.size and indices.dtype.kind not in "iu":
            raise PartitionError(f"point indices must be integers, got {indices.dtype} values")
        object.__setattr__(self, "indices", indices.astype(np.int64).ravel())

    @property
    def size(self) -> int:
        return int(self.indices.size)

    def global_indices(self, nlat: int, nlon: int) -> np.ndarray:
        n = nlat * nlon
        bad = self.indices[(self.indices < 0) | (self.indices >= n)]
        if bad.size:
            raise PartitionError(
                f"{bad.size} point indices outside [0, {n}) of the {nlat}x{nlon} host grid, e.g. {bad[:5].tolist()}"
            )
        return self.indices.copy()


class CellDirectory:
    """Where each host cell lives: the rank that holds it and its index among that rank's cells.
    Kept distributed, rank d keeping the cells [d·N // P, (d+1)·N // P) of the N-cell grid, so that
    no rank holds a table of the whole grid (a host of millions of cells on hundreds of ranks).

    Made collectively from every rank's cells, which must cover the grid exactly once: every rank
    raises the same :class:`PartitionError` (naming counts and examples) or none does."""

    def __init__(self, comm: Communicator, local_indices: np.ndarray, ncells: int):
        self.comm = comm
        cells = np.asarray(local_indices, dtype=np.int64).ravel()
        self.nlocal = int(cells.size)
        self._bounds = np.array([ncells * d // comm.size for d in range(comm.size + 1)], dtype=np.int64)
        first, end = self._bounds[comm.rank], self._bounds[comm.rank + 1]
        outside = cells[(cells < 0) | (cells >= ncells)]
        inside = np.flatnonzero((cells >= 0) & (cells < ncells))
        received, _ = self._to_keepers(cells[inside], np.stack([cells[inside], inside], axis=1))
        counts = np.zeros(end - first, dtype=np.int64)
        self._rank = np.full(end - first, -1, dtype=np.int64)  # of each kept cell
        self._position = np.full(end - first, -1, dtype=np.int64)
        for rank, pairs in enumerate(received):
            kept = pairs[:, 0] - first
            counts += np.bincount(kept, minlength=counts.size)
            self._rank[kept], self._position[kept] = rank, pairs[:, 1]
        twice = np.flatnonzero(counts > 1)
        examples = [(int(first + k), sorted(r for r, pairs in enumerate(received) if (pairs[:, 0] == first + k).any()))
                    for k in twice[:5]]
        missing = np.flatnonzero(counts == 0)
        report = (int(outside.size), outside[:5].tolist(), int(twice.size), examples, int(missing.size),
                  (first + missing[:5]).tolist())
        reports = comm.allgather(report)
        problems = []
        if sum(r[0] for r in reports):
            problems.append(f"{sum(r[0] for r in reports)} cells outside [0, {ncells}) "
                            f"(e.g. {[c for r in reports for c in r[1]][:5]})")
        if sum(r[2] for r in reports):
            shown = [f"cell {c} on ranks {ranks}" for r in reports for c, ranks in r[3]][:5]
            problems.append(f"{sum(r[2] for r in reports)} cells owned more than once ({'; '.join(shown)})")
        if sum(r[4] for r in reports):
            problems.append(f"{sum(r[4] for r in reports)} cells owned by no rank "
                            f"(e.g. {[c for r in reports for c in r[5]][:5]})")
        if problems:
            raise PartitionError(f"host partition does not cover the {ncells}-cell grid exactly once: "
                                 + "; ".join(problems))

    def lookup(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rank, index among that rank's cells) of each of ``cells`` (global indices); collective."""
        cells = np.asarray(cells, dtype=np.int64).ravel()
        first = self._bounds[self.comm.rank]
        asked, order = self._to_keepers(cells, cells[:, None])
        answers = self.comm.alltoallv([np.stack([self._rank[q[:, 0] - first], self._position[q[:, 0] - first]], axis=1)
                                       for q in asked], np.int64)
        found = np.empty((cells.size, 2), dtype=np.int64)
        found[order] = np.concatenate([a.reshape(-1, 2) for a in answers])  # the keepers answer in the order sent
        return found[:, 0], found[:, 1]

    def _to_keepers(self, cells: np.ndarray, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """``rows`` (one per cell, int64) sent to the ranks that keep their ``cells``: what each rank
        sent here, in rank order, as arrays of such rows, and the order in which this rank sent its
        rows (grouped by keeper, each group in the given order). Collective."""
        keeper = np.searchsorted(self._bounds, cells, side="right") - 1
        order = np.argsort(keeper, kind="stable")
        edges = np.searchsorted(keeper[order], np.arange(self.comm.size + 1))
        send = [rows[order[edges[d]:edges[d + 1]]] for d in range(self.comm.size)]
        return [m.reshape(-1, rows.shape[1]) for m in self.comm.alltoallv(send, np.int64)], order
