import numpy as np
import pytest

from ai4land_coupler.comm import SerialComm
from ai4land_coupler.inference import gaussian_weights, make_lattice, tiled_predict


def test_lattice_is_fixed_and_covers_the_grid():
    lat = make_lattice(180, 360, 64, 0.5, wrap_lon=True)
    assert lat.lat_starts == (0, 32, 64, 96, 116)
    assert lat.lon_starts == tuple(range(0, 360, 32))
    reg = make_lattice(50, 70, 32, 0.25, wrap_lon=False)
    assert reg.lon_starts[-1] == 70 - 32 and reg.lat_starts[-1] == 50 - 32


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
