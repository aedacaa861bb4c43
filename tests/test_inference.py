import numpy as np
import pytest
import torch

from ai4land_coupler.comm import SerialComm
from ai4land_coupler.emulators.unet import UNet
from ai4land_coupler.inference import gaussian_weights, make_lattice, tile_step, tiled_predict


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


@pytest.mark.parametrize("wrap", [True, False])
def test_pointwise_model_is_reproduced_exactly_by_tiling(wrap):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 45, 90)).astype(np.float32)
    pointwise = lambda b: 2.0 * b[:, :2] + b[:, 2:3]  # noqa: E731
    y = tiled_predict(pointwise, x, tile=32, overlap=0.5, wrap_lon=wrap, comm=SerialComm(),
                      inference_index=0, n_inference=1)
    assert y.shape == (2, 45, 90)
    np.testing.assert_allclose(y, 2.0 * x[:2] + x[2:3], rtol=1e-5, atol=1e-5)


def test_longitude_wrap_has_no_seam():
    # a model that sees its neighbours: on a zonally uniform field the output must be zonally uniform
    x = np.tile(np.linspace(0, 1, 40, dtype=np.float32)[None, :, None], (1, 1, 72))
    smooth = lambda b: (b + np.roll(b, 1, axis=3) + np.roll(b, -1, axis=3)) / 3  # noqa: E731
    y = tiled_predict(smooth, x, tile=32, overlap=0.5, wrap_lon=True, comm=SerialComm(),
                      inference_index=0, n_inference=1)
    interior = y[0, :, :]
    assert np.ptp(interior[5], axis=0) < 1e-6


def test_batch_split_over_inference_ranks_gives_same_bits():
    class Pretend:  # a comm whose allgather returns the work of two inference ranks
        rank, size = 0, 1

        def allgather(self, obj):
            other = {}
            for b in range(1, 1000, 2):
                if b < len(self.batches):
                    other[b] = np.asarray(self.f(np.stack([self.x[:, j:j + 32, i:i + 32] for j, i in self.batches[b]])),
                                          dtype=np.float32)
            return [obj, other]

    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 64, 128)).astype(np.float32)
    f = lambda b: np.tanh(b.sum(axis=1, keepdims=True))  # noqa: E731
    one = tiled_predict(f, x, tile=32, overlap=0.5, wrap_lon=True, comm=SerialComm(), inference_index=0,
                        n_inference=1, batch_size=4)
    p = Pretend()
    lattice = make_lattice(64, 128, 32, 0.5, True)
    tiles = lattice.tiles
    p.batches = [tiles[k:k + 4] for k in range(0, len(tiles), 4)]
    p.x = np.pad(x, ((0, 0), (0, 0), (0, max(lattice.lon_starts) + 32 - 128)), mode="wrap")
    p.f = f
    two = tiled_predict(f, x, tile=32, overlap=0.5, wrap_lon=True, comm=p, inference_index=0, n_inference=2,
                        batch_size=4)
    assert np.array_equal(one, two)


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
    tiled = tiled_predict(lambda b: _forward(model, b), x, tile=tile, overlap=0.5, wrap_lon=False,
                          comm=SerialComm(), inference_index=0, n_inference=1)
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
