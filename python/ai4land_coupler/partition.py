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


def validate_cover(comm: Communicator, local_indices: np.ndarray, ncells: int) -> None:
    """Check collectively that the ranks' cells cover the grid exactly once.

    Every rank raises the same :class:`PartitionError` (naming counts and examples) or none does.
    """
    everything = comm.allgatherv(local_indices.astype(np.int64))
    owners = np.concatenate([np.full(n, r) for r, n in enumerate(comm.allgather(local_indices.size))])
    counts = np.bincount(everything, minlength=ncells)
    problems = []
    dup = np.flatnonzero(counts > 1)
    if dup.size:
        examples = []
        for g in dup[:5]:
            examples.append(f"cell {g} on ranks {sorted(set(owners[everything == g].tolist()))}")
        problems.append(f"{dup.size} cells owned more than once ({'; '.join(examples)})")
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        problems.append(f"{missing.size} cells owned by no rank (e.g. {missing[:5].tolist()})")
    if problems:
        raise PartitionError(f"host partition does not cover the {ncells}-cell grid exactly once: " + "; ".join(problems))
