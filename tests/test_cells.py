"""The compiled cell kernels (``cells.py``) against the float64 NumPy formulation they
replaced, kept here as the reference, and their independence of how the grid is cut."""
from __future__ import annotations

import numpy as np
import pytest

from ai4land_coupler import cells
from ai4land_coupler.datasets import CLASS_CODES, CLASS_INDEX, GROUP_OF_CLASS, LANDUSE_CLASSES, SCENARIO_GROUPS, STATIC_NAMES
from ai4land_coupler.emulators import LandUseEmulator
from ai4land_coupler.emulators.landuse import CLASS_COLUMN, landuse_features
from ai4land_coupler.errors import EmulatorError

# The reference's class level → column of the conservation: the 5 scenario groups, then "no group" (ocean, water).
GROUP_MATRIX = np.zeros((len(LANDUSE_CLASSES), len(SCENARIO_GROUPS)))  # class level × group: 1 where it belongs
for _code, _group in GROUP_OF_CLASS.items():
    GROUP_MATRIX[CLASS_INDEX[_code], _group] = 1.0
REF_GROUPS = np.concatenate([GROUP_MATRIX, (GROUP_MATRIX.sum(axis=1) == 0)[:, None]], axis=1)


def _to_blocks(a: np.ndarray, k: int) -> np.ndarray:
    """(c, H, W) → (cells, k*k, c): the pixels of each coarse cell."""
    c, h, w = a.shape
    return a.reshape(c, h // k, k, w // k, k).transpose(1, 3, 2, 4, 0).reshape((h // k) * (w // k), k * k, c)


def _from_blocks(blocks: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`_to_blocks`: (cells, k*k, c) → (c, H, W)."""
    h, w = shape
    c = blocks.shape[-1]
    return blocks.reshape(h // k, w // k, k, k, c).transpose(4, 0, 2, 1, 3).reshape(c, h, w)


def _cell_targets(scenario_fine, land_mask, area, k: int):
    """Per coarse cell: land (cells, k*k, 1), pixel areas (cells, k*k, 1) and the target share of the
    cell's area of each group and of inland water, (cells, 6). A scenario asking for more than the
    cell's land is scaled down to fit."""
    land = _to_blocks(np.asarray(land_mask, dtype=np.float64)[None], k)
    pixel_area = _to_blocks(np.asarray(area, dtype=np.float64)[None], k)
    land_share = (land * pixel_area).sum(axis=(1, 2)) / pixel_area.sum(axis=(1, 2))
    target = _to_blocks(np.asarray(scenario_fine, dtype=np.float64), k)[:, 0, :]
    target *= np.minimum(1.0, land_share / np.maximum(target.sum(axis=1), 1e-300))[:, None]
    water = np.maximum(land_share - target.sum(axis=1), 0.0)
    return land, pixel_area, np.concatenate([target, water[:, None]], axis=1)



def reference_conserve(probs, scenario_fine, land_mask, area, k, iterations=30):
    n, h, w = probs.shape
    blocks = _to_blocks(np.asarray(probs, dtype=np.float64), k)
    land, pixel_area, target = _cell_targets(scenario_fine, land_mask, area, k)
    active = land.any(axis=(1, 2))  # cells without land are left as they are: skip them
    p, land, pixel_area, target = blocks[active], land[active], pixel_area[active], target[active]
    cell_area = pixel_area.sum(axis=(1, 2))
    land_area = land * pixel_area
    groups = REF_GROUPS * (CLASS_CODES != 0)[:, None]  # ocean is in no column

    def shares(q):
        return (q @ groups * land_area).sum(axis=1) / cell_area[:, None]

    for _ in range(iterations):
        share = shares(p)
        factor = np.where(share > 0, target / np.where(share > 0, share, 1.0), 1.0)
        scaled = p * (factor @ groups.T)[:, None, :]
        p = np.where(land > 0, scaled / np.maximum(scaled.sum(axis=2, keepdims=True), 1e-300), p)
    # Exact correction: take the excess of each group in proportion to its mass at each pixel ...
    share = shares(p)
    excess, deficit = np.maximum(share - target, 0.0), np.maximum(target - share, 0.0)
    mass = p @ groups * land  # (cells, k*k, 6)
    taken = mass * np.where(share > 0, excess / np.where(share > 0, share, 1.0), 0.0)[:, None, :]
    keep = np.clip(1.0 - np.where(mass > 0, taken / np.where(mass > 0, mass, 1.0), 0.0), 0.0, 1.0)
    p = p * (keep @ groups.T + (groups.sum(axis=1) == 0))
    # ... and give it to the groups in deficit, split among their classes as at the pixel (or the cell).
    given = taken.sum(axis=2, keepdims=True) * (deficit / np.maximum(deficit.sum(axis=1, keepdims=True), 1e-300))[:, None, :]
    cell_split = (p * land).sum(axis=1, keepdims=True) + 1e-300 * groups.sum(axis=1)
    mass = p @ groups
    split = np.where((mass @ groups.T) > 0, p, cell_split) * groups.sum(axis=1)
    split = split / np.maximum(split @ groups @ groups.T, 1e-300)
    p = p + (given @ groups.T) * split
    blocks[active] = np.clip(p, 0.0, 1.0)  # rounding leaves |p - clip(p)| ~ 1e-16
    return _from_blocks(np.clip(blocks, 0.0, 1.0), k, (h, w))



def reference_allocate(probs, scenario_fine, land_mask, area, k, previous=None):
    h, w = land_mask.shape
    p = _to_blocks(np.asarray(probs, dtype=np.float64), k)  # (cells, k*k, 8)
    land, pixel_area, target = _cell_targets(scenario_fine, land_mask, area, k)
    land, pixel_area = land[..., 0] > 0, pixel_area[..., 0]
    groups = REF_GROUPS * (CLASS_CODES != 0)[:, None]
    group_prob = p @ groups  # (cells, k*k, 6)
    cells, pixels, ncol = group_prob.shape
    remaining = target * pixel_area.sum(axis=1, keepdims=True)  # area still to give to each group
    order = np.argsort(-np.where(land[..., None], group_prob, -np.inf).reshape(cells, -1), axis=1, kind="stable")
    chosen = np.full((cells, pixels), -1)
    rows = np.arange(cells)
    for r in range(int(land.sum(axis=1).max(initial=0)) * ncol):
        pix, g = np.divmod(order[:, r], ncol)
        a = pixel_area[rows, pix]
        ok = land[rows, pix] & (chosen[rows, pix] < 0) & (remaining[rows, g] >= 0.5 * a)
        chosen[rows[ok], pix[ok]] = g[ok]
        remaining[rows[ok], g[ok]] -= a[ok]
    left = land & (chosen < 0)
    chosen[left] = np.argmax(group_prob, axis=2)[left]
    in_group = np.where(groups.T[np.maximum(chosen, 0)] > 0, p, -1.0)  # (cells, k*k, 8)
    level = np.argmax(in_group, axis=2)
    if previous is not None:
        before = _to_blocks(CLASS_INDEX[np.asarray(previous)][None], k)[..., 0]  # -1: no data
        kept = (before >= 0) & (groups.T[np.maximum(chosen, 0), np.maximum(before, 0)] > 0)
        level = np.where(kept, before, level)
    level = np.where(land, level, 0)
    return _from_blocks(CLASS_CODES[level][..., None], k, (h, w))[0]



def reference_uncertainty(probs, land_mask):
    p = np.asarray(probs, dtype=np.float64)[1:]
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    entropy = -plogp.sum(axis=0) / np.log(p.shape[0])
    return np.where(land_mask, np.clip(entropy, 0.0, 1.0), 0.0)


def reference_landuse_features(scenario_fine, static, prev_map, area, k, static_names):
    """The raw land-use inputs as NumPy built them, channel block by channel block."""
    h, w = prev_map.shape
    level = CLASS_INDEX[prev_map]
    onehot = (level[None] == np.arange(len(LANDUSE_CLASSES))[:, None, None])
    blocks = _to_blocks(onehot.astype(np.float64) * area, k)  # (cells, k*k, classes)
    weight = _to_blocks(np.asarray(area, dtype=np.float64)[None], k)[..., 0].sum(axis=1)
    shares = np.zeros((blocks.shape[0], len(SCENARIO_GROUPS)))
    for g in range(len(SCENARIO_GROUPS)):
        for i in range(k * k):  # pixel order, as the kernels sum
            shares[:, g] += blocks[:, i, :] @ GROUP_MATRIX[:, g]
    previous = _from_blocks(np.repeat((shares / weight[:, None])[:, None, :], k * k, axis=1), k, (h, w))
    row, col = ((np.arange(n) % k + 0.5) / k - 0.5 for n in (h, w))
    position = np.stack(np.meshgrid(row, col, indexing="ij")).astype(np.float32)
    scenario_fine = np.asarray(scenario_fine, dtype=np.float32)
    return np.concatenate([scenario_fine, scenario_fine - previous.astype(np.float32), position,
                           np.stack([np.asarray(static[n], dtype=np.float32) for n in static_names]),
                           onehot.astype(np.float32)])


def test_landuse_inputs_are_the_numpy_features_normalised_on_any_cut_of_the_grid():
    logits, land, area, scenario, previous = _fields(5, h=32)
    rng = np.random.default_rng(5)
    static = {n: rng.normal(size=land.shape).astype(np.float32) for n in STATIC_NAMES}
    raw = reference_landuse_features(scenario, static, previous, area, 4, STATIC_NAMES)
    em = _emulator()
    em._mean = rng.normal(size=(raw.shape[0], 1, 1)).astype(np.float32)
    em._std = rng.uniform(0.5, 2.0, size=(raw.shape[0], 1, 1)).astype(np.float32)
    np.testing.assert_array_equal(landuse_features(scenario, static, previous, area, 4, STATIC_NAMES), raw)
    whole = em.inputs(scenario, static, previous, area)
    np.testing.assert_array_equal(whole, (raw - em._mean) / em._std)
    for first, end in ((0, 8), (8, 20), (20, 32)):
        rows = slice(first, end)
        part = em.inputs(scenario[:, rows], {n: v[rows] for n, v in static.items()}, previous[rows], area[rows])
        assert np.array_equal(part, whole[:, rows])


def _fields(seed=0, h=24, w=32, k=4):
    """Random probabilities on a masked grid, a scenario the land can hold, polar-like areas."""
    rng = np.random.default_rng(seed)
    land = rng.random((h, w)) > 0.35
    land[:k, :k] = False  # an all-ocean cell
    area = np.cos(np.deg2rad(np.linspace(-80, 80, h)))[:, None] * np.ones((1, w))
    logits = (rng.normal(size=(8, h, w)) * 3).astype(np.float32)
    share = rng.dirichlet(np.ones(6), size=(h // k, w // k)).transpose(2, 0, 1)[:5] * 0.9
    scenario = np.repeat(np.repeat(share, k, axis=1), k, axis=2).astype(np.float32)
    previous = CLASS_CODES[rng.integers(0, 8, size=(h, w))]
    previous[rng.random((h, w)) > 0.9] = 99  # no data
    return logits, land, area, scenario, previous


def _emulator(k=4):
    n = 12 + len(STATIC_NAMES) + 8
    return LandUseEmulator.create(static_names=STATIC_NAMES, coarse_factor=k, fine_resolution_deg=1.0,
                                  mean=np.zeros(n), std=np.ones(n), widths=(8, 8, 8, 8))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernels_agree_with_the_numpy_reference(seed):
    logits, land, area, scenario, previous = _fields(seed)
    em = _emulator()
    probs = em.masked_probabilities(logits, land)
    np.testing.assert_allclose(probs, em.apply_mask(em.finish(logits), land), rtol=0, atol=1e-14)
    for iterations in (0, 3, 30):
        np.testing.assert_allclose(em.conserve(probs, scenario, land, area, iterations=iterations),
                                   reference_conserve(probs, scenario, land, area, 4, iterations), rtol=0, atol=1e-13)
    conserved = em.conserve(probs, scenario, land, area)
    for before in (None, previous):
        np.testing.assert_array_equal(em.allocate(conserved, scenario, land, area, before),
                                      reference_allocate(conserved, scenario, land, area, 4, before))
    np.testing.assert_allclose(em.uncertainty(conserved, land), reference_uncertainty(conserved, land), rtol=0, atol=1e-14)


def test_kernels_give_the_same_bits_on_any_cut_of_the_grid():
    """Slabs of whole coarse-cell rows, and a transposed (Fortran-ordered) input, change no bit."""
    logits, land, area, scenario, previous = _fields(3, h=32)
    em = _emulator()
    whole_probs = em.masked_probabilities(logits, land)
    whole = em.conserve(whole_probs, scenario, land, area)
    whole_map = em.allocate(whole, scenario, land, area, previous)
    np.testing.assert_array_equal(em.conserve(np.asfortranarray(whole_probs), scenario, land, area), whole)
    for first, end in ((0, 8), (8, 20), (20, 32)):
        rows = slice(first, end)
        probs = em.masked_probabilities(logits[:, rows], land[rows])
        assert np.array_equal(probs, whole_probs[:, rows])
        part = em.conserve(probs, scenario[:, rows], land[rows], area[rows])
        assert np.array_equal(part, whole[:, rows])
        assert np.array_equal(em.allocate(part, scenario[:, rows], land[rows], area[rows], previous[rows]), whole_map[rows])


def test_kernels_compile_where_no_cache_location_is_writable(monkeypatch):
    from numba.core import caching

    from ai4land_coupler.compiled import kernel

    def twice(x):
        return 2 * x

    assert kernel(twice)._cache.__class__.__name__ == "FunctionCache"  # cached where it can be
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # a read-only install, no writable home
    compiled = kernel(twice)
    assert compiled(21) == 42 and compiled._cache.__class__.__name__ == "NullCache"


def test_masked_lai_is_the_softplus_over_land():
    from ai4land_coupler.emulators import LaiEmulator

    rng = np.random.default_rng(5)
    raw = (rng.normal(size=(1, 12, 20)) * 30).astype(np.float32)  # both tails of the softplus
    land = rng.random((12, 20)) > 0.4
    lai = LaiEmulator.masked_lai(raw, land)
    assert lai.dtype == np.float32 and lai.shape == land.shape
    np.testing.assert_array_equal(lai, LaiEmulator.apply_mask(LaiEmulator.finish(raw)[0], land))


def test_conserve_leaves_its_input_alone_unless_asked_and_checks_shapes():
    logits, land, area, scenario, _ = _fields(4)
    em = _emulator()
    probs = em.masked_probabilities(logits, land)
    kept = probs.copy()
    conserved = em.conserve(probs, scenario, land, area)
    assert np.array_equal(probs, kept) and not np.array_equal(conserved, kept)
    assert em.conserve(probs, scenario, land, area, in_place=True) is probs
    assert np.array_equal(probs, conserved)
    with pytest.raises(EmulatorError, match="do not match the land mask"):
        em.conserve(probs[:, :, :-4], scenario, land, area)
    with pytest.raises(EmulatorError, match="do not tile coarse cells"):
        em.allocate(probs[:, :-1], scenario[:, :-1], land[:-1], area[:-1])


@pytest.mark.parametrize("seed", [0, 3])
def test_post_process_is_the_stages_in_turn_bit_for_bit(seed):
    """The fused cell pass gives the bits of the softmax, projection, allocation, entropy and the
    conservation check's group shares run one after the other, on any cut of the grid."""
    from ai4land_coupler.datasets import group_shares

    logits, land, area, scenario, previous = _fields(seed, h=32)
    land[4:12, 8:20] = False  # six coarse cells without land (written at once)
    em = _emulator()
    probs = em.conserve(em.masked_probabilities(logits, land), scenario, land, area)
    for before in (None, previous):
        year = em.post_process(logits, scenario, land, area, before)
        assert np.array_equal(year.probabilities, probs)
        assert np.array_equal(year.fine_map, em.allocate(probs, scenario, land, area, before))
        assert np.array_equal(year.uncertainty, em.uncertainty(probs, land))
        assert np.array_equal(year.group_shares, group_shares(probs, 4, area))
        assert year.group_shares.shape == (5, 8, 8) and 0 < year.group_shares.max() <= 1
    whole = em.post_process(logits, scenario, land, area, previous)
    for first, end in ((0, 12), (12, 32)):
        rows = slice(first, end)
        part = em.post_process(logits[:, rows], scenario[:, rows], land[rows], area[rows], previous[rows])
        assert np.array_equal(part.probabilities, whole.probabilities[:, rows])
        assert np.array_equal(part.fine_map, whole.fine_map[rows])
    with pytest.raises(EmulatorError, match="do not match the land mask"):
        em.post_process(logits[:7], scenario, land, area)


def test_landuse_inputs_refuse_a_scenario_that_varies_in_a_cell_and_unknown_class_codes():
    logits, land, area, scenario, previous = _fields(6, h=16, w=16)
    rng = np.random.default_rng(6)
    static = {n: rng.normal(size=land.shape).astype(np.float32) for n in STATIC_NAMES}
    inputs = landuse_features(scenario, static, previous, area, 4, STATIC_NAMES)
    nodata = previous == 99
    assert nodata.any() and np.all(inputs[-8:][:, nodata] == 0)  # no data: no class
    bad = scenario.copy()
    bad[2, 9, 14] += 0.01  # one pixel of one coarse cell
    with pytest.raises(EmulatorError, match="not constant over aligned 4x4 coarse cells"):
        landuse_features(bad, static, previous, area, 4, STATIC_NAMES)
    for codes in (previous.copy(), previous.astype(np.int64)):
        codes[3, 5] = 78
        with pytest.raises(EmulatorError, match=r"codes \[78\]"):
            landuse_features(scenario, static, codes, area, 4, STATIC_NAMES)
    with pytest.raises(EmulatorError, match=r"codes \[-3\]"):
        landuse_features(scenario, static, np.where(nodata, -3, previous.astype(np.int64)), area, 4, STATIC_NAMES)


def test_allocation_takes_any_integer_map_of_codes_and_refuses_what_is_not_one():
    logits, land, area, scenario, previous = _fields(7)
    em = _emulator()
    probs = em.conserve(em.masked_probabilities(logits, land), scenario, land, area)
    expected = em.allocate(probs, scenario, land, area, previous)
    assert np.array_equal(em.allocate(probs, scenario, land, area, previous.astype(np.int32)), expected)
    assert np.array_equal(em.post_process(logits, scenario, land, area, previous.astype(np.int64)).fine_map, expected)
    with pytest.raises(EmulatorError, match="outside the class codes"):
        em.allocate(probs, scenario, land, area, np.where(previous == 99, 300, previous.astype(np.int64)))
    with pytest.raises(EmulatorError, match="outside the class codes"):
        em.post_process(logits, scenario, land, area, previous.astype(np.float32))
    with pytest.raises(EmulatorError, match="the previous map has shape"):
        em.allocate(probs, scenario, land, area, previous[:-4])


def test_conservation_error_is_the_largest_gap_over_the_cells_whose_scenario_fits():
    rng = np.random.default_rng(11)
    k, groups, hc, wc = 3, 5, 4, 6
    coarse = rng.random((groups, hc, wc)) / groups
    scenario = np.repeat(np.repeat(coarse, k, axis=1), k, axis=2).astype(np.float32)
    land_share = rng.uniform(0.5, 1.0, (hc, wc))
    land_share[0, :3] = 0.1  # these cells ask for more than their land
    shares = scenario[:, ::k, ::k].astype(np.float64) + rng.normal(0.0, 1e-9, (groups, hc, wc))
    shares[2, 0, 0] += 0.5  # a gap in a cell that does not count
    fits = scenario[:, ::k, ::k].astype(np.float64).sum(axis=0) <= land_share + 1e-6
    worst, feasible, infeasible = cells.conservation_error(shares, scenario, k, land_share, 1e-6)
    assert (feasible, infeasible) == (int(fits.sum()), int((~fits).sum())) and infeasible >= 3
    assert worst == np.abs(shares - scenario[:, ::k, ::k])[:, fits].max() and 0 < worst < 1e-8
    shares[1, 3, 5] = np.nan
    assert fits[3, 5] and np.isnan(cells.conservation_error(shares, scenario, k, land_share, 1e-6)[0])

