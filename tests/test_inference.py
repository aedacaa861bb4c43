import numpy as np
import pytest
import torch

from ai4land_coupler import inference
from ai4land_coupler.comm import SerialComm, run_threads
from ai4land_coupler.emulators.unet import UNet
from ai4land_coupler.inference import (field_buffer, gaussian_weights, make_lattice, make_layout, predict_slab, tile_step,
                                       tiled_predict, with_halo)


def test_lattice_is_fixed_aligned_and_covers_the_grid():
    lat = make_lattice(180, 360, 64, 0.5, wrap_lon=True)
    assert lat.lat_starts == (0, 32, 64, 96, 128)  # the last tile runs past the edge into padding
    assert lat.lon_starts == tuple(range(0, 360, 32))
    reg = make_lattice(50, 70, 32, 0.25, wrap_lon=False)
    assert reg.lat_starts == (0, 24) and reg.lon_starts == (0, 24, 48)
    assert make_lattice(20, 20, 64, 0.5, wrap_lon=False).tiles == [(0, 0)]
    assert tile_step(64, 0.4) == 32 and tile_step(128, 0.5) == 64 and tile_step(16, 0.9) == 8
    with pytest.raises(ValueError, match="multiple of 8"):
        tile_step(60, 0.5)


def test_gaussian_weights():
    w = gaussian_weights(64)
    assert w.shape == (64, 64) and w.max() == 1.0 and w.min() == pytest.approx(1e-3)
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert gaussian_weights(64) is w and not w.flags.writeable  # made once, and nobody changes it


@pytest.mark.parametrize("wrap", [True, False])
def test_pointwise_model_is_reproduced_exactly_by_tiling(wrap):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 45, 90)).astype(np.float32)
    pointwise = lambda b: 2.0 * b[:, :2] + b[:, 2:3]  # noqa: E731
    y = tiled_predict(pointwise, x, tile=32, overlap=0.5, wrap_lon=wrap)
    assert y.shape == (2, 45, 90)
    np.testing.assert_allclose(y, 2.0 * x[:2] + x[2:3], rtol=1e-5, atol=1e-5)


def test_longitude_wrap_has_no_seam():
    # a model that sees its neighbours: on a zonally uniform field the output must be zonally uniform
    x = np.tile(np.linspace(0, 1, 40, dtype=np.float32)[None, :, None], (1, 1, 72))
    smooth = lambda b: (b + np.roll(b, 1, axis=3) + np.roll(b, -1, axis=3)) / 3  # noqa: E731
    y = tiled_predict(smooth, x, tile=32, overlap=0.5, wrap_lon=True)
    interior = y[0, :, :]
    assert np.ptp(interior[5], axis=0) < 1e-6


def _slabs(x, f, *, ranks: int, band_rows: int, wrap: bool, tile=32, batch_size=8):
    """predict_slab on ``ranks`` thread ranks, one slab each; the whole field reassembled."""
    layout = make_layout(*x.shape[1:], tile=tile, overlap=0.5, wrap_lon=wrap, band_rows=band_rows, n_slabs=ranks)

    def work(comm):
        first, end = layout.slab_rows(comm.rank)
        slab = comm.rank if end > first else -1
        return predict_slab(f, x[:, first:end] if slab >= 0 else None, layout, comm=comm, slab=slab,
                            slab_ranks=list(range(ranks)), batch_size=batch_size)

    return np.concatenate([r for r in run_threads(ranks, work) if r is not None], axis=1)


@pytest.mark.parametrize("wrap, shape", [(True, (72, 128)), (False, (70, 100))])
@pytest.mark.parametrize("band_rows", [8, 24])
def test_slabs_on_any_number_of_ranks_give_the_same_bits(wrap, shape, band_rows):
    x = np.random.default_rng(2).normal(size=(2, *shape)).astype(np.float32)
    f = lambda b: np.concatenate([np.tanh(b.sum(axis=1, keepdims=True)), 2 * b[:, :1]], axis=1)  # noqa: E731
    one = _slabs(x, f, ranks=1, band_rows=band_rows, wrap=wrap)
    assert one.shape == (2, *shape)
    np.testing.assert_allclose(one, tiled_predict(f, x, tile=32, overlap=0.5, wrap_lon=wrap), rtol=1e-6, atol=1e-6)
    for ranks in (2, 3, 5):
        assert np.array_equal(_slabs(x, f, ranks=ranks, band_rows=band_rows, wrap=wrap), one), ranks


def test_bands_hold_the_tiles_that_start_in_them_and_slabs_are_contiguous():
    layout = make_layout(180, 360, tile=128, overlap=0.5, wrap_lon=True, band_rows=16, n_slabs=4)
    assert [b.rows for b in layout.bands][:2] == [(0, 16), (16, 32)] and layout.bands[-1].rows == (176, 180)
    assert sorted(t for b in layout.bands for t in b.tiles) == sorted(layout.lattice.tiles)
    assert all(b.rows[0] <= j < b.rows[1] and b.reach >= j + 128 for b in layout.bands for j, _ in b.tiles)
    rows = [layout.slab_rows(s) for s in range(4)]
    assert rows[0][0] == 0 and rows[-1][1] == 180 and all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
    assert np.all(np.diff(layout.slab_of_band) >= 0)


def test_a_failing_tile_batch_on_one_rank_fails_every_rank_without_a_hang():
    from ai4land_coupler.errors import EmulatorError

    x = np.zeros((1, 64, 64), np.float32)
    layout = make_layout(64, 64, tile=32, overlap=0.5, wrap_lon=True, band_rows=16, n_slabs=2)

    def work(comm):
        def f(b):
            if comm.rank == 1:
                raise EmulatorError("injected")
            return b
        first, end = layout.slab_rows(comm.rank)
        try:
            predict_slab(f, x[:, first:end], layout, comm=comm, slab=comm.rank, slab_ranks=[0, 1])
        except EmulatorError as exc:
            return str(exc)

    assert run_threads(2, work) == ["rank 1: injected"] * 2


def _random_unet(seed: int = 0) -> UNet:
    """A U-Net with random weights and BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = UNet(3, 2, (8, 8, 8, 8), film_channels=(2,))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif hasattr(m, "film") and m.film is not None:
                m.film.out.weight.normal_(0.0, 0.3)
    return model.eval()


def _forward(model: UNet, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def test_unet_output_depends_only_on_its_receptive_field():
    model, r = _random_unet(), UNet.receptive_radius()
    x = np.random.default_rng(0).normal(size=(1, 3, 192, 192)).astype(np.float32)
    y = _forward(model, x)
    x2 = x.copy()
    x2[0, :, 96, 96] += 10.0
    changed = np.nonzero(np.any(_forward(model, x2) != y, axis=(0, 1)))
    reach = max(np.abs(changed[0] - 96).max(), np.abs(changed[1] - 96).max())
    assert 30 < reach <= r  # the bound is tight enough to be useful, and holds


def test_tiling_differs_from_the_whole_field_only_where_the_receptive_field_is_cut():
    """Seam test: a regional field of 256x256 with tiles of 128 (step 64) against one whole-field pass.

    A pixel is cut when some tile that contributes to it (every Gaussian weight is > 0) ends within
    the receptive radius of it, other than at the domain's own edge (where both passes see the
    same zero padding of the convolutions).
    """
    model, r, n, tile = _random_unet(1), UNet.receptive_radius(), 256, 128
    x = np.random.default_rng(1).normal(size=(3, n, n)).astype(np.float32)
    whole = _forward(model, x[None])[0]
    tiled = tiled_predict(lambda b: _forward(model, b), x, tile=tile, overlap=0.5, wrap_lon=False)
    starts = make_lattice(n, n, tile, 0.5, wrap_lon=False).lat_starts
    p = np.arange(n)
    cut_1d = np.zeros(n, dtype=bool)
    for s in starts:
        covers = (p >= s) & (p < s + tile)
        cut_1d |= covers & (((s > 0) & (p - r < s)) | ((s + tile < n) & (p + r >= s + tile)))
    cut = cut_1d[:, None] | cut_1d[None, :]
    diff = np.abs(tiled - whole).max(axis=0)
    assert (~cut).sum() > 1000  # the comparison is not vacuous ...
    assert diff[~cut].max() < 1e-5 * np.abs(whole).max()  # ... identical up to rounding where uncut
    assert diff[cut].max() > 1e-3 * np.abs(whole).max()  # and the cut is really what differs
    # The Gaussian keeps the seam small: cut tile edges weigh little against the tile centres.
    assert np.median(diff[cut]) < 0.05 * np.abs(whole).std()


def _reference_tile(field, row, col, tile, wrap):
    """The tile at (row, col) by the edge rules, one cell at a time."""
    channels, rows, width = field.shape
    out = np.zeros((channels, tile, tile), np.float32)
    for y in range(tile):
        for x in range(tile):
            r, c = row + y, col + x
            if wrap:
                out[:, y, x] = field[:, min(r, rows - 1), c % width]
            elif r < rows and c < width:
                out[:, y, x] = field[:, r, c]
    return out


@pytest.mark.parametrize("wrap, shape", [(True, (50, 40)), (False, (50, 70))])
def test_tiles_are_views_of_the_completed_field_with_the_edge_rules(wrap, shape):
    field = np.random.default_rng(3).normal(size=(3, *shape)).astype(np.float32)
    layout = make_layout(*shape, tile=32, overlap=0.5, wrap_lon=wrap, band_rows=shape[0], n_slabs=1)
    completed = with_halo(field, layout, comm=SerialComm(), slab=0, slab_ranks=[0])
    lat = layout.lattice
    row_of_tiles = np.array([(0, c) for c in lat.lon_starts])
    two_rows = np.array(lat.tiles[len(lat.lon_starts) - 2:len(lat.lon_starts) + 1])  # unevenly spaced
    for batch in (row_of_tiles, two_rows, np.array([lat.tiles[-1]] * 2)):
        tiles = inference._tiles(completed, batch[:, 0], batch[:, 1], 32)
        for tile, (row, col) in zip(tiles, batch):
            assert np.array_equal(tile, _reference_tile(field, row, col, 32, wrap)), (row, col)
        assert np.shares_memory(tiles, completed) == (batch is not two_rows)
    with pytest.raises(ValueError, match="pass a field"):
        inference._tiles(completed, np.array([completed.shape[1] - 31]), np.array([0]), 32)


def _written_buffer(channels: int, seed: int, wrap: bool):
    """(a 50x40 field, its one-slab layout with tiles of 32, its field buffer with the field written in)."""
    field = np.random.default_rng(seed).normal(size=(channels, 50, 40)).astype(np.float32)
    layout = make_layout(50, 40, tile=32, overlap=0.5, wrap_lon=wrap, band_rows=50, n_slabs=1)
    buffer = field_buffer(layout, 0, channels)
    buffer[:, :50, :40] = field
    return field, layout, buffer


@pytest.mark.parametrize("wrap", [True, False])
def test_a_field_completed_again_for_some_channels_keeps_the_others(wrap):
    field, layout, buffer = _written_buffer(4, 5, wrap)
    first = with_halo(buffer[:, :50, :40], layout, comm=SerialComm(), slab=0, slab_ranks=[0]).copy()
    buffer[[0, 2], :50, :40] += 1.0  # a new year of two channels
    buffer[1, :, 40:] = -5.0  # not completed again: stays
    again = with_halo(buffer[:, :50, :40], layout, comm=SerialComm(), slab=0, slab_ranks=[0], channels=[0, 2])
    assert np.all(again[1, :, 40:] == -5.0) and np.array_equal(again[3], first[3])
    field[[0, 2]] += 1.0
    again[1] = first[1]
    assert np.array_equal(again, with_halo(field, layout, comm=SerialComm(), slab=0, slab_ranks=[0]))
    with pytest.raises(ValueError, match="field buffer"):
        with_halo(field, layout, comm=SerialComm(), slab=0, slab_ranks=[0], channels=[0])


@pytest.mark.parametrize("wrap", [True, False])
def test_inputs_written_into_the_field_buffer_are_completed_in_place(wrap):
    field, layout, buffer = _written_buffer(3, 4, wrap)
    completed = with_halo(buffer[:, :50, :40], layout, comm=SerialComm(), slab=0, slab_ranks=[0])
    assert completed is buffer
    assert np.array_equal(completed, with_halo(field, layout, comm=SerialComm(), slab=0, slab_ranks=[0]))
    assert inference._buffer_of(buffer[:, 1:, :40], buffer.shape) is None  # not its leading corner: copied
    assert inference._buffer_of(np.ascontiguousarray(field), buffer.shape) is None


@pytest.mark.parametrize("wrap", [True, False])
def test_blend_weights_are_every_tile_weight_on_the_cell(wrap):
    layout = make_layout(50, 40, tile=32, overlap=0.5, wrap_lon=wrap, band_rows=16, n_slabs=1)
    whole = np.zeros((50, 40))
    for row, col in layout.lattice.tiles:
        rows, cols = np.arange(row, row + 32), np.arange(col, col + 32)
        keep_rows, keep_cols = rows < 50, (cols < 40) | wrap
        np.add.at(whole, np.ix_(rows[keep_rows], cols[keep_cols] % 40), gaussian_weights(32)[np.ix_(keep_rows, keep_cols)])
    blended = np.concatenate([layout.blend_weights(band) for band in layout.bands])
    np.testing.assert_allclose(blended, whole, rtol=1e-6)  # float32, as the sums they divide
    assert blended.dtype == np.float32
    assert blended.min() > 0 and not layout.blend_weights(layout.bands[0]).flags.writeable


@pytest.mark.parametrize("wrap", [True, False])
def test_blend_adds_each_band_s_sums_to_zeros_in_band_order_to_the_bit(wrap):
    layout = make_layout(50, 40, tile=32, overlap=0.5, wrap_lon=wrap, band_rows=16, n_slabs=1)
    rng = np.random.default_rng(9)
    sums = {}
    for band in layout.bands:
        if band.tiles:
            block = rng.normal(size=(2, min(band.reach, 50) - band.rows[0], 40)).astype(np.float32)
            block[:, :2, :3] = -0.0  # 0 + (-0) is +0
            sums[band.index] = block
    want = np.zeros((2, 50, 40), np.float32)
    for dest in layout.bands:
        rows = slice(*dest.rows)
        for source in sorted(sums):  # band order
            first, end = max(layout.bands[source].rows[0], dest.rows[0]), min(layout.bands[source].reach, dest.rows[1])
            if first < end:
                want[:, first:end] += sums[source][:, first - layout.bands[source].rows[0]:end - layout.bands[source].rows[0]]
        want[:, rows] /= layout.blend_weights(dest)
    got = inference.blend(sums, layout, comm=SerialComm(), slab=0, slab_ranks=[0])
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    assert np.signbit(want).sum() > 0 and not np.signbit(want[:, :2, :3]).any()


@pytest.mark.parametrize("wrap", [True, False])
@pytest.mark.parametrize("band_rows", [16, 40])  # one row of tiles per band, or two
def test_band_sums_add_each_weighted_tile_to_zeros_in_tile_order_to_the_bit(band_rows, wrap):
    layout = make_layout(50, 40, tile=32, overlap=0.5, wrap_lon=wrap, band_rows=band_rows, n_slabs=1)
    rng = np.random.default_rng(13)
    field = rng.normal(size=(1, 80, 72)).astype(np.float32)

    def predict_batch(x):  # a stand-in network: its output has some -0
        y = np.concatenate([x, -x], axis=1).astype(np.float32)
        y[:, :, :3, :3] = -0.0
        return y
    weights = gaussian_weights(32)
    for band in layout.bands:
        got = inference._band_sums(predict_batch, field, 0, band, layout, batch_size=3)
        if not band.tiles:
            assert got is None
            continue
        want = np.zeros((2, band.reach - band.rows[0], max(layout.lattice.lon_starts) + 32), np.float32)
        for row, col in band.tiles:
            tile = predict_batch(field[None, :, row:row + 32, col:col + 32])[0]
            want[:, row - band.rows[0]:row - band.rows[0] + 32, col:col + 32] += tile * weights
        if wrap:
            want[:, :, :want.shape[2] - 40] += want[:, :, 40:]  # the wrapped columns folded back
        want = want[:, :50 - band.rows[0], :40]
        assert np.array_equal(got.view(np.int32), want.view(np.int32))
        if not wrap and band.rows[0] == 0:  # a tile's -0 where no other tile adds: 0 + (-0) is +0
            assert not np.signbit(got[:, :3, :3]).any()
