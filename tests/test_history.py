"""The fine-grid history written per slab of rows and joined (history.join_history, `ai4land
join-history`): the joined file is the one file a single writer makes, bit for bit."""
from __future__ import annotations

import cftime
import netCDF4
import numpy as np
import pytest

from ai4land_coupler.cli import main as cli
from ai4land_coupler.grids import LatLonGrid
from ai4land_coupler.history import FineHistory, history_path, join_history

GRID = LatLonGrid(12, 20, lat0=30.0, lon0=-10.0, dlat=0.5, dlon=0.5)
CLASSES = [(0, "ocean"), (11, "urban"), (22, "cropland")]
SLABS = [(0, 5), (5, 9), (9, 12)]
CALENDAR = "noleap"


def _records(seed=0):
    """Two land-use years and three LAI periods of the whole grid."""
    rng = np.random.default_rng(seed)
    years = [(cftime.datetime(2030 + k, 1, 1, calendar=CALENDAR), rng.choice([0, 11, 22], size=GRID.shape).astype(np.uint8),
              rng.random(GRID.shape).astype(np.float32)) for k in range(2)]
    lai = [(cftime.datetime(2030, m, 1, calendar=CALENDAR), (6 * rng.random(GRID.shape)).astype(np.float32))
           for m in (1, 2, 3)]
    return years, lai


def _write(folder, slabs=None, records=None, first_index=0):
    """The history of ``records`` in one file (``slabs`` None) or one file per slab of rows, the
    slabs numbered from ``first_index``."""
    years, lai = records or _records()
    for index, rows in enumerate(slabs or [None], start=first_index):
        slab = None if rows is None else (index, first_index + len(slabs), *rows)
        history = FineHistory(folder, GRID, CALENDAR, CLASSES, slab)
        part = slice(*rows) if rows else slice(None)
        for date, fine_map, uncertainty in years:
            history.write_landuse(date, fine_map[part], uncertainty[part])
        for date, values in lai:
            history.write_lai(date, values[part])
        history.close()


def _contents(path):
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        variables = {name: (v.dimensions, v[:].tobytes(), {a: str(v.getncattr(a)) for a in v.ncattrs()})
                     for name, v in ds.variables.items()}
        return variables, {a: str(ds.getncattr(a)) for a in ds.ncattrs()}


def test_slab_files_joined_are_the_one_file_bit_for_bit(tmp_path):
    _write(tmp_path / "one")
    _write(tmp_path / "slabs", SLABS)
    with netCDF4.Dataset(history_path(tmp_path / "slabs", 1)) as ds:
        assert ds.dimensions["lat"].size == 4 and ds.ai4land_rows.tolist() == [5, 9] and ds.ai4land_grid_rows == 12
        assert ds["lat"][0] == GRID.lat[5]
    joined = join_history(tmp_path / "slabs")
    assert joined == tmp_path / "slabs" / "ai4land_fine_history.nc"
    assert _contents(joined) == _contents(tmp_path / "one" / "ai4land_fine_history.nc")
    assert history_path(tmp_path / "slabs", 0).exists()  # the slab files are kept


def test_join_refuses_what_is_not_every_slab_of_one_run(tmp_path, capsys):
    _write(tmp_path / "gap", SLABS)
    history_path(tmp_path / "gap", 1).unlink()
    with pytest.raises(ValueError, match=r"rows \[\(0, 5\), \(9, 12\)\] do not tile the 12 rows"):
        join_history(tmp_path / "gap")
    _write(tmp_path / "short", SLABS)
    years, lai = _records()
    _write(tmp_path / "short", SLABS[1:2], (years, lai[:2]), first_index=1)  # slab 1 again, one LAI record short
    with pytest.raises(ValueError, match=r"slab0001.nc holds \{'year_time': 2, 'time': 2\} records in noleap, "
                                         r"against \{'year_time': 2, 'time': 3\}"):
        join_history(tmp_path / "short")
    assert cli(["join-history", str(tmp_path / "nothing")]) == 2
    assert "no ai4land_fine_history_slab*.nc to join" in capsys.readouterr().err
    assert cli(["join-history", str(tmp_path / "gap")]) == 2
    assert "do not tile the 12 rows" in capsys.readouterr().err


def test_a_slab_writer_needs_rows_of_the_grid(tmp_path):
    with pytest.raises(ValueError, match=r"rows \[12, 14\) are not in the 12 rows"):
        FineHistory(tmp_path, GRID, CALENDAR, CLASSES, (0, 1, 12, 14))
