import numpy as np
import pytest

from ai4land_coupler.comm import SerialComm
from ai4land_coupler.errors import PartitionError
from ai4land_coupler.mockhost import decompose
from ai4land_coupler.partition import Box, Points, validate_cover


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


def test_cover_check_names_overlaps_and_gaps():
    validate_cover(SerialComm(), np.arange(12), 12)
    with pytest.raises(PartitionError) as err:
        validate_cover(SerialComm(), np.array([0, 1, 1, 2, 3]), 6)
    msg = str(err.value)
    assert "1 cells owned more than once" in msg and "cell 1 on ranks [0]" in msg
    assert "2 cells owned by no rank (e.g. [4, 5])" in msg
