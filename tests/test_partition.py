import numpy as np
import pytest

from ai4land_coupler.comm import SerialComm
from ai4land_coupler.errors import PartitionError
from ai4land_coupler.mockhost import decompose
from ai4land_coupler.partition import Box, CellDirectory, Points


def test_box_indices_are_lon_fastest():
    assert Box(2, 1, 3, 2).global_indices(4, 10).tolist() == [12, 13, 14, 22, 23, 24]


def test_box_outside_grid_is_refused():
    with pytest.raises(PartitionError, match="outside the host grid"):
        Box(8, 0, 3, 1).global_indices(4, 10)
    with pytest.raises(PartitionError, match="positive"):
        Box(0, 0, 0, 1).global_indices(4, 10)


def test_points_keep_host_order_and_reject_out_of_range():
    assert Points([7, 3, 5]).global_indices(2, 5).tolist() == [7, 3, 5]
    with pytest.raises(PartitionError, match="2 point indices outside"):
        Points([0, 10, -1]).global_indices(2, 5)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7])
def test_mock_host_boxes_tile_the_grid_exactly(size):
    cells = np.concatenate([decompose(9, 14, size, r).global_indices(9, 14) for r in range(size)])
    assert np.array_equal(np.sort(cells), np.arange(9 * 14))


def test_uneven_boxes():
    sizes = {decompose(9, 14, 4, r).size for r in range(4)}
    assert len(sizes) > 1


def test_cover_check_names_overlaps_gaps_and_strays():
    CellDirectory(SerialComm(), np.arange(12), 12)
    with pytest.raises(PartitionError) as err:
        CellDirectory(SerialComm(), np.array([0, 1, 1, 2, 3, 9, -1]), 6)
    msg = str(err.value)
    assert "2 cells outside [0, 6) (e.g. [9, -1])" in msg
    assert "1 cells owned more than once (cell 1 on ranks [0])" in msg
    assert "2 cells owned by no rank (e.g. [4, 5])" in msg


@pytest.mark.parametrize("ranks, ncells", [(1, 12), (3, 12), (4, 10), (5, 3)])
def test_the_directory_finds_every_cell_where_it_lives(ranks, ncells):
    """Kept in blocks (empty ones too, with fewer cells than ranks), asked in any order, from any
    rank: each cell's rank and index there, as the ranks listed them."""
    from ai4land_coupler.comm import run_threads

    rng = np.random.default_rng(ranks)
    owner = rng.integers(0, ranks, size=ncells)
    held = [rng.permutation(np.flatnonzero(owner == r)) for r in range(ranks)]
    position = np.empty(ncells, dtype=np.int64)
    for cells in held:
        position[cells] = np.arange(cells.size)

    def ask(comm):
        directory = CellDirectory(comm, held[comm.rank], ncells)
        asked = np.random.default_rng(comm.rank).integers(0, ncells, size=7 * comm.rank)  # repeats; none on rank 0
        return directory.nlocal, asked, directory.lookup(asked)

    for rank, (nlocal, asked, (found_rank, found_position)) in enumerate(run_threads(ranks, ask)):
        assert nlocal == held[rank].size
        assert found_rank.tolist() == owner[asked].tolist()
        assert found_position.tolist() == position[asked].tolist()


def test_no_rank_holds_a_table_of_the_whole_grid():
    from ai4land_coupler.comm import run_threads

    ncells = 4000
    tables = run_threads(4, lambda comm: CellDirectory(comm, np.arange(comm.rank, ncells, 4), ncells)._rank.size)
    assert tables == [1000] * 4
