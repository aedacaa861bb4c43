"""A synthetic, physically plausible world written in the real file formats (`ai4land make-data`).

Everything follows from one seed; the same seed gives byte-identical files.

* **Geography at any resolution and in any region**: every random field is a sum of random plane
  waves on the unit sphere (seamless), standardised with its statistics on a fixed 1° reference
  globe, and the land and lake thresholds are quantiles on that reference globe too. Operations on
  neighbours (slope, continentality) run on the grid grown by a halo. A regional world
  (``region``, snapped outward to whole coarse cells) therefore has the global world's land,
  terrain, soil and climate at its place; its land use and anomalies are drawn for the region.
* **Terrain**: the top 30 % (by area) of a power-law noise field is land. Elevation grows inland
  with ridged mountains; ``slope`` is the mean sub-grid slope, taken as the local relief (3×3
  range) spread over 10 km hillslopes, times a log-normal small-scale roughness. About 2 % of the
  land is inland water.
* **Climate** (fine, monthly climatology): sea-level temperature from a latitude profile,
  −6.5 K/km lapse rate, a seasonal cycle opposite in the two hemispheres whose amplitude grows
  with latitude and continentality; precipitation from an ITCZ / dry subtropics / storm-track
  profile that follows the sun, drier inland, wetter uphill; shortwave from daily top-of-atmosphere
  insolation times a cloudiness-dependent transmissivity. Interannual anomalies are on the coarse
  grid: spatially smooth AR(1) monthly noise plus a 0.03 K/yr warming trend. The WorldClim
  variables bio01, bio04, bio12 and bio15 are computed from the monthly climatology (no data over
  ocean, as in WorldClim).
* **Land-use scenario**: target group fractions per coarse cell start from a development field
  (smooth noise + crop suitability) and evolve with regional expansion or abandonment rates of
  cropland and pasture (taken from forest and natural land), urban growth proportional to existing
  urban land, and yearly jitter. Per cell, the targets become integer pixel counts
  (largest-remainder rounding over its land pixels that are not inland water).
* **Fine maps** come from an allocation model: per coarse cell, the counts are placed on pixels
  by a greedy assignment of the best (pixel, group) scores. A score is a static suitability
  (urban: also attraction to last year's urban neighbours) plus a small yearly noise; last year's
  group gets a persistence bonus larger than any suitability difference, so only the net change
  moves, minus the pixel's best suitability for a group that grows in its cell, so the pixels
  released by a shrinking group are those best suited to the growing ones. Natural pixels are
  grass/shrubland, or sparse/no vegetation where the aridity index P/PET < 0.2 (PET = 0.12·(T+5)
  mm/day, at least 0.3), the annual temperature is below −12 °C or the elevation exceeds 4500 m.
* **LUH2 states are area-weighted aggregates of the true fine maps**: a group's fraction in a
  coarse cell is the area of its fine pixels there (``cell_area_weights``) over the area of the
  cell, so the crosswalk aggregation (:meth:`datasets.WorldData.aggregate`) is exact. The group is
  split into its states by fixed shares: primary/secondary by year, C3/C4 by temperature,
  managed pasture/rangeland by rainfall. The crosswalk (:data:`datasets.LUH2_CROSSWALK`):

  ======================================= ============== ===============================
  LUH2 states                             group          HILDA+ classes
  ======================================= ============== ===============================
  primf, secdf                            forest         44 forest
  primn, secdn                            natural        55 grass/shrubland, or 66 sparse
  urban                                   urban          11 urban
  c3ann, c4ann, c3per, c4per, c3nfx       cropland       22 cropland
  pastr, range                            pasture        33 pasture/rangeland
  (none)                                  (none)         0 ocean, 77 inland water
  ======================================= ============== ===============================

* **Observed maps**: the written HILDA+-style maps are the true maps with 0.1 % of the land pixels
  per year set to 99 = no data (cloud gaps); the LUH2 states and LAI use the true maps.
* **LAI**: per class, ``lai_min + (lai_max − lai_min) · f_T · f_W · f_R`` with a temperature
  logistic (growth above ~6 °C), a moisture limit that needs more rain when warmer and a light
  limit, times 5 % log-normal noise. Evergreen behaviour emerges where neither temperature nor
  moisture ever limit (humid tropics); elsewhere the canopy is seasonal.
"""
from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np

from . import datasets as ds
from .grids import LatLonGrid, Region, Window, block_sum

LAND_SHARE = 0.30
WATER_SHARE = 0.02
LAPSE_RATE = 6.5e-3  # K m-1
WARMING_TREND = 0.03  # K yr-1
MM_DAY = 1.0 / 86400.0  # kg m-2 s-1 per mm day-1
NOLEAP_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
MONTH_START = np.concatenate([[0], np.cumsum(NOLEAP_DAYS)[:-1]])
MID_MONTH_DOY = MONTH_START + NOLEAP_DAYS / 2.0  # day of year (0-based) of each mid-month
PERSISTENCE_BONUS = 4.0
ALLOCATION_NOISE = 0.002
# (lai_min, lai_max) per class code; ocean and water have no leaves.
LAI_RANGE = {ds.URBAN: (0.2, 1.2), ds.CROPLAND: (0.2, 4.5), ds.PASTURE: (0.3, 3.0), ds.FOREST: (1.0, 6.0),
             ds.GRASS: (0.2, 2.5), ds.SPARSE: (0.0, 0.4)}
LAI_NOISE = 0.05
NODATA_SHARE = 1e-3  # share of land pixels per year written as no data (cloud gaps) in the observed maps
REFERENCE_GRID = LatLonGrid.global_grid(1.0)  # noise statistics and land/water thresholds come from it
BIOCLIM_FILL = np.float32(-3.4e38)  # WorldClim's no-data value (ocean)
BIOCLIM_ATTRS = {
    "bio01": {"units": "degC", "long_name": "annual mean temperature (mean of the 12 monthly means)"},
    "bio04": {"units": "degC", "long_name": "temperature seasonality (standard deviation of the 12 monthly means x 100)"},
    "bio12": {"units": "mm", "long_name": "annual precipitation"},
    "bio15": {"units": "percent", "long_name": "precipitation seasonality (coefficient of variation of the 12 monthly totals)"},
}
LUH2_LONG_NAMES = {
    "primf": "forested primary land", "primn": "non-forested primary land",
    "secdf": "potentially forested secondary land", "secdn": "potentially non-forested secondary land",
    "urban": "urban land", "c3ann": "C3 annual crops", "c4ann": "C4 annual crops", "c3per": "C3 perennial crops",
    "c4per": "C4 perennial crops", "c3nfx": "C3 nitrogen-fixing crops", "pastr": "managed pasture", "range": "rangeland",
}
DRIVER_ATTRS = {
    "tas": {"units": "K", "standard_name": "air_temperature", "long_name": "near-surface air temperature"},
    "pr": {"units": "kg m-2 s-1", "standard_name": "precipitation_flux", "long_name": "precipitation"},
    "rsds": {"units": "W m-2", "standard_name": "surface_downwelling_shortwave_flux_in_air",
             "long_name": "surface downwelling shortwave radiation"},
}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _bell(x, mu, sd):
    return np.exp(-0.5 * ((x - mu) / sd) ** 2)


class _Noise:
    """Isotropic noise on the sphere: a sum of random plane waves with a power-law spectrum.

    Its randomness does not depend on any grid, and it is standardised with its mean and standard
    deviation on :data:`REFERENCE_GRID`, so every grid (any resolution, any region) samples one field.
    """

    def __init__(self, rng: np.random.Generator, freqs, exponent: float, waves: int = 24):
        self.terms = []
        for f in freqs:
            direction = rng.normal(size=(waves, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            phase = rng.uniform(0.0, 2 * np.pi, waves)
            self.terms.append((f ** -exponent, 2 * np.pi * f, direction, phase))
        raw = self._raw(REFERENCE_GRID)
        self.mean, self.std = raw.mean(), raw.std()
        self.reference = (raw - self.mean) / self.std

    def _raw(self, grid: LatLonGrid) -> np.ndarray:
        lat, lon = np.meshgrid(np.deg2rad(grid.lat), np.deg2rad(grid.lon), indexing="ij")
        xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)
        total = np.zeros(grid.shape)
        for amplitude, wavenumber, direction, phase in self.terms:
            total += amplitude * np.cos(wavenumber * (xyz @ direction.T) + phase).sum(axis=-1)
        return total

    def __call__(self, grid: LatLonGrid) -> np.ndarray:
        return (self._raw(grid) - self.mean) / self.std


def _area_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values, axis=None)
    cum = np.cumsum(weights.ravel()[order])
    return float(values.ravel()[order][np.searchsorted(cum, q * cum[-1])])


def _box_smooth(field: np.ndarray, radius: int, wrap: bool, passes: int = 2) -> np.ndarray:
    """Repeated box filter over the last two axes: longitude wraps when ``wrap``, other edges replicate."""
    out = field.astype(np.float64)
    n = 2 * radius + 1
    for _ in range(passes):
        if wrap:
            padded = np.concatenate([out[..., -radius:], out, out[..., :radius]], axis=-1)
        else:
            padded = np.pad(out, [(0, 0)] * (out.ndim - 1) + [(radius, radius)], mode="edge")
        c = np.cumsum(np.pad(padded, [(0, 0)] * (out.ndim - 1) + [(1, 0)]), axis=-1)
        out = (c[..., n:] - c[..., :-n]) / n
        padded = np.pad(out, [(0, 0)] * (out.ndim - 2) + [(radius, radius), (0, 0)], mode="edge")
        c = np.cumsum(np.pad(padded, [(0, 0)] * (out.ndim - 2) + [(1, 0), (0, 0)]), axis=-2)
        out = (c[..., n:, :] - c[..., :-n, :]) / n
    return out


def _neighbourhood(field: np.ndarray, wrap: bool) -> np.ndarray:
    """The 3×3 neighbourhood (9, H, W) of each cell: longitude wraps when ``wrap``, other edges replicate."""
    padded = np.pad(field, ((1, 1), (1, 1)), mode="edge")
    if wrap:
        padded[:, 0], padded[:, -1] = padded[:, -2], padded[:, 1]
    h, w = field.shape
    return np.stack([padded[1 + dj:1 + dj + h, 1 + di:1 + di + w] for dj in (-1, 0, 1) for di in (-1, 0, 1)])


def _neighbour_share(mask: np.ndarray, wrap: bool) -> np.ndarray:
    """Share of the 8 neighbours that are set."""
    return (_neighbourhood(mask.astype(np.float64), wrap).sum(axis=0) - mask) / 8.0


def _padded(grid: LatLonGrid, halo: int) -> tuple[LatLonGrid, Window]:
    """``grid`` grown by ``halo`` cells on each side (not beyond the poles; a whole circle of longitude
    at most), and the window of ``grid`` in it."""
    south = min(halo, round((grid.lat0 + 90.0) / grid.dlat))
    north = min(halo, round((90.0 - grid.lat0) / grid.dlat) - grid.nlat)
    full_circle = round(360.0 / grid.dlon)
    west = 0 if grid.nlon + 2 * halo >= full_circle else halo
    nlon = full_circle if west == 0 else grid.nlon + 2 * halo
    grown = LatLonGrid(grid.nlat + south + north, nlon, grid.lat0 - south * grid.dlat, grid.lon0 - west * grid.dlon,
                       grid.dlat, grid.dlon)
    return grown, grown.window(grid.region)


def _terrain(grid: LatLonGrid, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Land, inland water, elevation, slope and continentality on ``grid``.

    Thresholds come from the reference grid and the neighbourhood operations run on ``grid`` grown by
    a halo, so a regional grid gets the global world's values at its place.
    """
    shape_noise = _Noise(rng, freqs=(0.6, 1.2, 2.4, 4.8, 9.6), exponent=1.4)
    ridge_noise = _Noise(rng, freqs=(2.0, 4.0, 8.0), exponent=0.8)
    lake_noise = _Noise(rng, freqs=(6.0, 12.0, 24.0), exponent=0.5)
    roughness_noise = _Noise(rng, freqs=(16.0, 32.0, 64.0), exponent=0.0)
    ref_weights = REFERENCE_GRID.cell_area_weights()
    threshold = _area_quantile(shape_noise.reference, ref_weights, 1.0 - LAND_SHARE)
    summit = shape_noise.reference.max()
    ref_land = shape_noise.reference > threshold
    lake_threshold = _area_quantile(np.where(ref_land, lake_noise.reference, -np.inf), ref_weights,
                                    1.0 - WATER_SHARE * LAND_SHARE)

    radius = max(1, round(6.0 / grid.dlat))  # continentality: share of land within ~10 degrees
    grown, inner = _padded(grid, halo=2 * radius)  # two box passes reach 2 * radius cells
    shape = shape_noise(grown)
    land = shape > threshold
    inland = np.clip((shape - threshold) / (summit - threshold), 0.0, 1.0)
    ridges = 1.0 - np.abs(ridge_noise(grown))
    elevation = np.where(land, 20.0 + 1800.0 * inland ** 1.3 + 4500.0 * np.sqrt(inland) * np.clip(ridges, 0, 1) ** 4, 0.0)
    water = land & (elevation < 2000.0) & (lake_noise(grown) > lake_threshold)
    around = _neighbourhood(elevation, grown.is_global)
    relief = around.max(axis=0) - around.min(axis=0)
    roughness = np.exp(0.4 * roughness_noise(grown))
    slope = np.where(land, np.degrees(np.arctan(roughness * relief / 10_000.0)), 0.0)
    continentality = _box_smooth(land, radius, wrap=grown.is_global)
    return {name: inner.take(field) for name, field in
            {"land": land, "water": water, "elevation": elevation, "slope": slope, "continentality": continentality}.items()}


def _insolation(lat_deg: np.ndarray, doy: float) -> np.ndarray:
    """Daily mean top-of-atmosphere shortwave (W m-2)."""
    phi = np.deg2rad(lat_deg)
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284 + doy + 1) / 365.0)
    h0 = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0))
    return 1361.0 / np.pi * (h0 * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(h0))


def _zonal_precip(lat: np.ndarray) -> np.ndarray:
    """mm/day: ITCZ, dry subtropics, mid-latitude storm tracks."""
    a = np.abs(lat)
    return np.maximum(1.0 + 6.0 * np.exp(-(lat / 9.0) ** 2) + 2.6 * np.exp(-((a - 48.0) / 12.0) ** 2)
                      - 0.5 * np.exp(-((a - 25.0) / 9.0) ** 2), 0.1)


def _climatology(grid: LatLonGrid, terrain: dict, rng: np.random.Generator) -> np.ndarray:
    """Monthly climatology (12, 3, H, W): tas K, pr kg m-2 s-1, rsds W m-2."""
    lat = np.repeat(grid.lat[:, None], grid.nlon, axis=1)
    hemi = np.sign(lat)
    elev, cont = terrain["elevation"], np.where(terrain["land"], terrain["continentality"], 0.0)
    t_regional = 1.5 * _Noise(rng, freqs=(1.0, 2.0, 4.0), exponent=1.0)(grid)
    p_regional = np.exp(0.35 * _Noise(rng, freqs=(1.0, 2.0, 4.0, 8.0), exponent=0.8)(grid))
    t_annual = 299.0 - 55.0 * (lat / 90.0) ** 2 + t_regional - LAPSE_RATE * elev
    amplitude = (1.0 + 13.0 * np.abs(np.sin(np.deg2rad(lat)))) * (0.4 + 0.9 * cont)
    out = np.empty((12, 3) + grid.shape)
    for m, doy in enumerate(MID_MONTH_DOY):
        season = -np.cos(2 * np.pi * (doy - 15.0) / 365.0)  # +1 in NH summer
        tas = t_annual + amplitude * hemi * season
        monsoon = 1.0 + 0.5 * cont * hemi * season * np.exp(-((np.abs(lat) - 20.0) / 12.0) ** 2)
        pr_mm = _zonal_precip(lat - 7.0 * season) * (1.4 - 0.7 * cont) * p_regional * monsoon * (1.0 + elev / 4000.0)
        cloud = pr_mm / (pr_mm + 3.0)
        rsds = _insolation(lat, doy) * np.clip(0.78 - 0.35 * cloud + 2e-5 * elev, 0.2, 0.9)
        out[m] = tas, pr_mm * MM_DAY, rsds
    return out


def _annual_mean(monthly: np.ndarray) -> np.ndarray:
    return np.tensordot(NOLEAP_DAYS / 365.0, monthly, axes=1)


def _soil_quality(grid, terrain, t_c, p_mm, rng) -> np.ndarray:
    base = np.clip(0.55 + 0.2 * _Noise(rng, freqs=(2.0, 4.0, 8.0, 16.0, 32.0, 64.0), exponent=0.3)(grid), 0.0, 1.0)
    quality = base * (1 - np.exp(-p_mm / 0.7)) * _sigmoid((t_c + 5.0) / 3.0) * (1 - 0.5 * np.clip(terrain["slope"] / 20.0, 0, 1))
    return np.where(terrain["land"], quality, 0.0)


def _suitability(terrain, soil, t_c, p_mm) -> np.ndarray:
    """Static suitability (5, H, W) per scenario group, in [0, 1]; urban adds neighbours later."""
    slope = terrain["slope"]
    forest = _sigmoid((p_mm - 1.3) / 0.25) * _sigmoid((t_c + 2.0) / 2.5) * (1.0 - _sigmoid((terrain["elevation"] - 3500.0) / 300.0))
    crop = soil * _bell(t_c, 16.0, 8.0) * (1 - np.exp(-p_mm / 1.5)) * np.exp(-slope / 6.0)
    pasture = (0.4 + 0.6 * soil) * _bell(t_c, 14.0, 11.0) * (1 - np.exp(-p_mm / 0.8)) * np.exp(-slope / 12.0)
    urban = 0.7 * np.exp(-slope / 3.0) * _bell(t_c, 15.0, 10.0) * (1 - np.exp(-p_mm / 0.5)) + 0.3 * (1.0 - terrain["continentality"])
    return np.stack([forest, 1.0 - forest, urban, crop, pasture])


def _is_sparse(terrain, t_c, p_mm) -> np.ndarray:
    pet = np.maximum(0.3, 0.12 * (t_c + 5.0))
    return (p_mm / pet < 0.2) | (t_c < -12.0) | (terrain["elevation"] > 4500.0)


def _blocks(fine: np.ndarray, k: int) -> np.ndarray:
    """(..., H, W) → (..., Hc*Wc, k*k): the fine cells of each coarse cell."""
    *lead, h, w = fine.shape
    x = fine.reshape(*lead, h // k, k, w // k, k)
    x = np.moveaxis(x, -3, -2)
    return x.reshape(*lead, (h // k) * (w // k), k * k)


def _unblocks(blocks: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    x = blocks.reshape(h // k, w // k, k, k)
    return np.moveaxis(x, 2, 1).reshape(h, w)


def _largest_remainder(fractions: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Integer counts (cells, groups) summing to n per cell, closest to n × fractions."""
    target = fractions * n[:, None]
    counts = np.floor(target).astype(np.int64)
    remainder = target - counts
    missing = n - counts.sum(axis=1)
    order = np.argsort(-remainder, axis=1, kind="stable")
    rank = np.argsort(order, axis=1, kind="stable")
    return counts + (rank < missing[:, None])


def _scenario_fractions(coarse: LatLonGrid, suit_c: np.ndarray, forest_potential: np.ndarray, years: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Group fractions of the land (non-water) area per coarse cell: (years, 5, Hc*Wc)."""
    dev_noise = _Noise(rng, freqs=(1.0, 2.0, 4.0), exponent=1.0)(coarse).ravel()
    # Regional trends of cropland and pasture: two smooth fields each, rotating over 30 years, so
    # regions move between expansion and abandonment.
    trends = np.stack([_Noise(rng, freqs=(1.0, 2.0, 4.0), exponent=1.0)(coarse).ravel() for _ in range(4)])
    _, _, s_urban, s_crop, s_pasture = suit_c
    development = _sigmoid(1.8 * dev_noise + 6.0 * (s_crop - 0.25))
    city = rng.random(dev_noise.size) < 0.06 * development
    urban = np.clip(0.08 * development ** 2 * (1.0 + 6.0 * city) * (0.5 + s_urban), 0.0, 0.3)
    crop = np.clip(2.5 * development * s_crop, 0.0, 0.8)
    pasture = np.clip(1.2 * development * s_pasture, 0.0, 0.6) * (1.0 - crop)
    used = urban + crop + pasture
    scale = np.minimum(1.0, 0.95 / np.maximum(used, 1e-9))
    urban, crop, pasture = urban * scale, crop * scale, pasture * scale
    free = 1.0 - urban - crop - pasture
    forest = free * forest_potential * (1.0 - 0.3 * development)
    f = np.stack([forest, free - forest, urban, crop, pasture])  # forest, natural, urban, cropland, pasture
    crop_scale = 0.09 * (0.2 + development) * np.minimum(1.0, 4.0 * s_crop)
    pasture_scale = 0.07 * (0.2 + development) * np.minimum(1.0, 4.0 * s_pasture)
    out = [f.copy()]
    for year in range(1, years):
        phase = 2 * np.pi * year / 30.0
        crop_rate = crop_scale * (np.cos(phase) * trends[0] + np.sin(phase) * trends[1] + 0.15)
        pasture_rate = pasture_scale * (np.cos(phase) * trends[2] + np.sin(phase) * trends[3] + 0.1)
        jitter = 1.0 + 0.5 * rng.normal(size=(3, f.shape[1]))
        # Urban growth: mostly from cropland, the rest from natural and forest land.
        grow = np.minimum(f[2] * 0.05 * development * jitter[0] + 0.0005 * development, 0.5 * (f[3] + f[1] + f[0]))
        grow = np.maximum(grow, 0.0)
        _move(f, grow, 2, sources=(3, 1, 0), weights=(2.0, 1.0, 1.0))
        for g, rate, j in ((3, crop_rate, jitter[1]), (4, pasture_rate, jitter[2])):
            change = rate * j
            expand = np.minimum(np.maximum(change, 0.0), 0.5 * (f[0] + f[1]))
            _move(f, expand, g, sources=(0, 1), weights=(1.5, 1.0))  # clearing prefers forest
            abandon = np.minimum(np.maximum(-change, 0.0), 0.5 * f[g])
            regrow = abandon * forest_potential
            f[g] -= abandon
            f[0] += regrow
            f[1] += abandon - regrow
        out.append(f.copy())
    return np.stack(out)


def _move(f: np.ndarray, amount: np.ndarray, target: int, sources, weights) -> None:
    """Move ``amount`` of area to group ``target`` from ``sources`` in proportion to weight × area."""
    share = np.stack([w * f[s] for s, w in zip(sources, weights)])
    total = share.sum(axis=0)
    take = np.where(total > 0, amount / np.maximum(total, 1e-12), 0.0)
    for s, part in zip(sources, share):
        moved = np.minimum(part * take, f[s])
        f[s] -= moved
        f[target] += moved


def _allocate(scores: np.ndarray, counts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Greedy allocation per coarse cell: best (pixel, group) pairs first, within the group counts.

    scores (cells, k*k, 5), counts (cells, 5) summing to the valid pixels per cell → group per pixel (-1 invalid).
    """
    cells, pixels, groups = scores.shape
    order = np.argsort(-np.where(valid[:, :, None], scores, -np.inf).reshape(cells, -1), axis=1, kind="stable")
    cap = counts.copy()
    group = np.full((cells, pixels), -1)
    rows = np.arange(cells)
    for r in range(pixels * groups):
        pix, g = np.divmod(order[:, r], groups)
        ok = valid[rows, pix] & (group[rows, pix] < 0) & (cap[rows, g] > 0)
        group[rows[ok], pix[ok]] = g[ok]
        cap[rows[ok], g[ok]] -= 1
    return group


def _allocation_scores(static_scores: np.ndarray, previous: np.ndarray, counts: np.ndarray, k: int, wrap: bool,
                       rng: np.random.Generator) -> np.ndarray:
    """Scores (cells, k*k, 5) of each (pixel, group) for the allocation of ``counts`` after map ``previous``.

    Pixels keep last year's group with a bonus; in a shrinking group, those under the highest
    pressure (best suited to a growing group of their cell, relative to their own) are released.
    """
    scores = static_scores.copy()
    scores[..., 2] = 0.35 * scores[..., 2] + 0.65 * _blocks(_neighbour_share(previous == 2, wrap), k)
    scores += ALLOCATION_NOISE * rng.normal(size=scores.shape)
    kept = _blocks(previous, k)[..., None] == np.arange(5)
    growing = counts > kept.sum(axis=1)
    pressure = np.max(np.where(growing[:, None, :], scores, -np.inf), axis=2)
    pressure = np.where(np.isfinite(pressure), pressure, 0.0)
    return scores + kept * (PERSISTENCE_BONUS - pressure[..., None])


def _land_use_maps(fine: LatLonGrid, coarse: LatLonGrid, terrain, static, nyears, rng_scenario, rng_alloc):
    """Yields the true class map (H, W) uint8 of each year."""
    k = coarse.refinement_factor(fine)
    t_c, p_mm = static["tas_annual"] - 273.15, static["pr_annual"] / MM_DAY
    valid = terrain["land"] & ~terrain["water"]
    suit = _suitability(terrain, static["soil_quality"], t_c, p_mm)
    n_valid = _blocks(valid, k).sum(axis=1)
    suit_c = np.where(n_valid > 0, (_blocks(suit, k) * _blocks(valid, k)).sum(axis=2) / np.maximum(n_valid, 1), 0.0)
    forest_potential = suit_c[0]
    fractions = _scenario_fractions(coarse, suit_c, forest_potential, nyears, rng_scenario)
    sparse = _is_sparse(terrain, t_c, p_mm)
    group_code = np.array([ds.FOREST, ds.GRASS, ds.URBAN, ds.CROPLAND, ds.PASTURE], dtype=np.uint8)

    valid_b = _blocks(valid, k)
    static_scores = np.moveaxis(_blocks(suit, k), 0, -1)  # (cells, k*k, 5)
    previous = np.where(suit[0] > 0.5, 0, 1)  # potential natural vegetation: forest or natural
    for year in range(nyears):
        counts = _largest_remainder(fractions[year].T, n_valid)
        scores = _allocation_scores(static_scores, previous, counts, k, fine.is_global, rng_alloc)
        group = _unblocks(_allocate(scores, counts, valid_b), k, fine.shape)
        codes = np.where(group >= 0, group_code[np.maximum(group, 0)], ds.OCEAN).astype(np.uint8)
        codes[(codes == ds.GRASS) & sparse] = ds.SPARSE
        codes[terrain["water"]] = ds.WATER
        previous = np.where(group >= 0, group, -1)
        yield codes


def _anomalies(coarse: LatLonGrid, clim_coarse: np.ndarray, nyears: int, rng: np.random.Generator) -> np.ndarray:
    """Monthly coarse anomalies (months, 3, Hc, Wc): smooth AR(1) noise and a warming trend."""
    months = 12 * nyears
    radius = max(1, round(8.0 / coarse.dlat))
    noise = _box_smooth(rng.normal(size=(months, 3) + coarse.shape), radius, wrap=coarse.is_global)
    noise /= noise.std(axis=(0, 2, 3), keepdims=True)
    a = np.empty_like(noise)
    a[0] = noise[0]
    for t in range(1, months):
        a[t] = 0.6 * a[t - 1] + 0.8 * noise[t]
    years = np.arange(months) // 12
    clim = clim_coarse[np.arange(months) % 12]
    tas = 0.9 * a[:, 0] + WARMING_TREND * years[:, None, None]
    pr = 0.25 * np.clip(a[:, 1], -3.0, 3.0) * clim[:, 1]
    rsds = (-0.1 * a[:, 1] + 0.05 * a[:, 2]) * clim[:, 2]
    return np.stack([tas, pr, rsds], axis=1)


def lai_from_climate(codes: np.ndarray, drivers: np.ndarray) -> np.ndarray:
    """Noise-free LAI (m2 m-2) of class map ``codes`` under fine drivers (3, H, W)."""
    tas, pr, rsds = drivers
    f_t = _sigmoid((tas - 279.0) / 2.5)
    f_w = 1.0 - np.exp(-(pr / MM_DAY) / (0.5 + 0.06 * np.maximum(tas - 273.15, 0.0)))
    f_r = rsds / (rsds + 40.0)
    growth = f_t * f_w * f_r
    lai = np.zeros(codes.shape)
    for code, (lo, hi) in LAI_RANGE.items():
        sel = codes == code
        lai[sel] = lo + (hi - lo) * growth[sel]
    return lai


def _write(path: Path, grid: LatLonGrid, title: str, seed: int, variables: dict, *, time=None, month=False) -> Path:
    """One CF netCDF file. ``variables``: name → (dims, data, dtype, attrs); time: (values, units, bounds)."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({"Conventions": "CF-1.8", "title": title, "source": "ai4land_coupler.world synthetic world",
                      "seed": seed})
        nc.createDimension("lat", grid.nlat)
        nc.createDimension("lon", grid.nlon)
        nc.createDimension("nv", 2)
        for axis, values, bounds, units in (("lat", grid.lat, grid.lat_bounds, "degrees_north"),
                                            ("lon", grid.lon, grid.lon_bounds, "degrees_east")):
            v = nc.createVariable(axis, "f8", (axis,))
            name = "latitude" if axis == "lat" else "longitude"
            v.setncatts({"units": units, "standard_name": name, "long_name": name,
                         "axis": "Y" if axis == "lat" else "X", "bounds": f"{axis}_bnds"})
            v[:] = values
            nc.createVariable(f"{axis}_bnds", "f8", (axis, "nv"))[:] = bounds
        if time is not None:
            values, units, bounds = time
            nc.createDimension("time", None)
            t = nc.createVariable("time", "f8", ("time",))
            t.setncatts({"units": units, "calendar": "noleap", "standard_name": "time", "long_name": "time", "axis": "T"})
            t[:] = values
            if bounds is not None:
                t.bounds = "time_bnds"
                nc.createVariable("time_bnds", "f8", ("time", "nv"))[:] = bounds
        if month:
            nc.createDimension("month", 12)
            m = nc.createVariable("month", "i4", ("month",))
            m.setncatts({"long_name": "calendar month", "units": "1"})
            m[:] = np.arange(1, 13)
        for name, (dims, data, dtype, attrs) in variables.items():
            fill = attrs.pop("_FillValue", None)
            chunks = (1,) + grid.shape if dims[0] in ("time", "month") else None
            v = nc.createVariable(name, dtype, dims, zlib=True, complevel=4, shuffle=True, fill_value=fill,
                                  chunksizes=chunks, least_significant_digit=attrs.pop("least_significant_digit", None))
            v.setncatts(attrs)
            v[:] = data
    return path


def _bioclim(clim: np.ndarray) -> dict[str, np.ndarray]:
    """WorldClim bioclimatic variables from the monthly climatology (12, 3, H, W), as dismo::biovars
    computes them: standard deviations over the 12 months use n - 1."""
    t_c = clim[:, 0] - 273.15
    p_mm = clim[:, 1] / MM_DAY * NOLEAP_DAYS[:, None, None]  # monthly totals
    p_cv = p_mm + 1.0  # +1 mm keeps the coefficient of variation finite in deserts
    return {"bio01": t_c.mean(axis=0), "bio04": 100.0 * t_c.std(axis=0, ddof=1), "bio12": p_mm.sum(axis=0),
            "bio15": 100.0 * p_cv.std(axis=0, ddof=1) / p_cv.mean(axis=0)}


def make_world(out_dir: str | Path, *, seed: int = 0, first_year: int = 2015, last_year: int = 2034,
               fine_res: float = 1.0, coarse_res: float = 4.0, region: Region | None = None,
               progress: bool = False) -> dict[str, Path]:
    """Write the world files into ``out_dir``; returns file key → path (keys of :data:`datasets.FILE_NAMES`).

    ``region`` (snapped outward to whole coarse cells) makes the world on that box only, with the
    global world's geography there; ``progress`` shows a progress bar over the years.
    """
    from tqdm import tqdm

    if last_year < first_year:
        raise ValueError(f"last_year {last_year} is before first_year {first_year}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fine_global, coarse_global = LatLonGrid.global_grid(fine_res), LatLonGrid.global_grid(coarse_res)
    k = coarse_global.refinement_factor(fine_global)
    region = coarse_global.snap(region) if region is not None else coarse_global.region
    fine, coarse = fine_global.window(region).grid, coarse_global.window(region).grid
    nyears = last_year - first_year + 1
    rng_terrain, rng_soil, rng_climate, rng_anom, rng_scen, rng_alloc, rng_lai, rng_gaps = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8))

    terrain = _terrain(fine, rng_terrain)
    clim = _climatology(fine, terrain, rng_climate)
    static = {"tas_annual": _annual_mean(clim[:, 0]), "pr_annual": _annual_mean(clim[:, 1])}
    t_c, p_mm = static["tas_annual"] - 273.15, static["pr_annual"] / MM_DAY
    static["soil_quality"] = _soil_quality(fine, terrain, t_c, p_mm, rng_soil)
    anomalies = _anomalies(coarse, block_sum(clim, k) / k**2, nyears, rng_anom)

    area = fine.cell_area_weights()
    groups = np.empty((nyears, len(ds.SCENARIO_GROUPS)) + coarse.shape)
    observed = np.empty((nyears,) + fine.shape, dtype=np.uint8)
    lai = np.empty((12 * nyears,) + fine.shape, dtype=np.float32)
    years = _land_use_maps(fine, coarse, terrain, static, nyears, rng_scen, rng_alloc)
    for y, codes in enumerate(tqdm(years, total=nyears, desc="make-data", unit="year", disable=not progress)):
        groups[y] = ds.group_fractions(codes, k, area)  # LUH2 states: area fractions of the true map
        for m in range(12):
            drivers = ds.combine_drivers(clim[m], anomalies[12 * y + m], k)
            noise = np.exp(LAI_NOISE * rng_lai.normal(size=fine.shape) - 0.5 * LAI_NOISE**2)
            lai[12 * y + m] = lai_from_climate(codes, drivers) * noise
        gaps = (rng_gaps.random(fine.shape) < NODATA_SHARE) & terrain["land"]  # cloud gaps, observed maps only
        observed[y] = np.where(gaps, ds.NODATA, codes)

    paths = {key: out_dir / name for key, name in ds.FILE_NAMES.items()}
    coord = {"coordinates": "lat lon"}
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    _write(paths["static"], fine, "static land-surface fields", seed, {
        "land_mask": (("lat", "lon"), terrain["land"].astype(np.int8), "i1",
                      {"long_name": "land (including inland water) mask", "standard_name": "land_binary_mask",
                       "units": "1", "flag_values": np.array([0, 1], np.int8), "flag_meanings": "ocean land"}),
        "elevation": (("lat", "lon"), f32(terrain["elevation"]), "f4",
                      {"units": "m", "standard_name": "surface_altitude", "long_name": "mean surface elevation"}),
        "slope": (("lat", "lon"), f32(terrain["slope"]), "f4",
                  {"units": "degree", "long_name": "mean sub-grid terrain slope"}),
        "soil_quality": (("lat", "lon"), f32(static["soil_quality"]), "f4",
                         {"units": "1", "long_name": "soil quality index (0 poor, 1 best)"}),
    })

    bioclim = _bioclim(clim)
    _write(paths["bioclim"], fine, "WorldClim-style bioclimatic variables", seed, {
        name: (("lat", "lon"), f32(np.where(terrain["land"], bioclim[name], BIOCLIM_FILL)), "f4",
               dict(attrs, _FillValue=BIOCLIM_FILL))
        for name, attrs in BIOCLIM_ATTRS.items()
    })

    has_land = block_sum(terrain["land"] & ~terrain["water"], k) > 0
    states = _luh2_states(groups, has_land, static, k)
    _write(paths["luh2_states"], coarse, "LUH2-style land-use states", seed, {
        name: (("time", "lat", "lon"), values, "f4",
               {"units": "1", "standard_name": "area_fraction", "long_name": LUH2_LONG_NAMES[name], "_FillValue": np.float32(1e20)})
        for name, values in states.items()
    }, time=(np.arange(nyears, dtype=float), f"years since {first_year}-01-01 0:0:0", None))

    flag = {"flag_values": np.append(ds.CLASS_CODES, np.uint8(ds.NODATA)),
            "flag_meanings": " ".join(n for _, n in ds.LANDUSE_CLASSES) + " no_data",
            "long_name": "HILDA+ land-use / land-cover class", **coord}
    _write(paths["lulc_maps"], fine, "HILDA+-style annual land-use / land-cover maps", seed,
           {"lulc": (("time", "lat", "lon"), observed, "u1", flag)},
           time=(np.arange(nyears, dtype=float), f"years since {first_year}-01-01 0:0:0", None))

    _write(paths["drivers_climatology"], fine, "monthly climatology of the land-surface drivers", seed, {
        name: (("month", "lat", "lon"), f32(clim[:, i]), "f4", dict(DRIVER_ATTRS[name], **coord))
        for i, name in enumerate(ds.DRIVER_NAMES)
    }, month=True)

    start = 365.0 * (np.arange(12 * nyears) // 12) + MONTH_START[np.arange(12 * nyears) % 12]
    end = start + NOLEAP_DAYS[np.arange(12 * nyears) % 12]
    monthly_time = ((start + end) / 2.0, f"days since {first_year}-01-01 0:0:0", np.stack([start, end], axis=1))
    _write(paths["drivers_anomaly"], coarse, "monthly anomalies of the land-surface drivers", seed, {
        f"{name}_anom": (("time", "lat", "lon"), f32(anomalies[:, i]), "f4",
                         dict(DRIVER_ATTRS[name], long_name=f"{DRIVER_ATTRS[name]['long_name']} anomaly", **coord))
        for i, name in enumerate(ds.DRIVER_NAMES)
    }, time=monthly_time)

    _write(paths["lai_monthly"], fine, "monthly leaf area index", seed, {
        "lai": (("time", "lat", "lon"), lai, "f4",
                {"units": "m2 m-2", "standard_name": "leaf_area_index", "long_name": "leaf area index",
                 "least_significant_digit": 3, **coord}),
    }, time=monthly_time)
    return paths


def _luh2_states(groups: np.ndarray, has_land: np.ndarray, static: dict, k: int) -> dict:
    """Split the group area fractions (years, 5, Hc, Wc) into the 12 LUH2 states (years, Hc, Wc), fill value
    where a coarse cell has no land outside inland water."""
    nyears = groups.shape[0]
    t_c = block_sum(static["tas_annual"], k) / k**2 - 273.15
    p_mm = block_sum(static["pr_annual"], k) / k**2 / MM_DAY
    primary = np.clip(0.7 - 0.015 * np.arange(nyears), 0.05, 0.95)[:, None, None]  # secondary land grows
    c4 = 0.6 * _sigmoid((t_c - 22.0) / 3.0)
    rangeland = _sigmoid((1.0 - p_mm) / 0.4)
    forest, natural, urban, crop, pasture = np.moveaxis(groups, 1, 0)
    parts = {
        "primf": forest * primary, "secdf": forest * (1 - primary),
        "primn": natural * primary, "secdn": natural * (1 - primary),
        "urban": urban,
        "c3ann": crop * 0.73 * (1 - c4), "c4ann": crop * 0.73 * c4,
        "c3per": crop * 0.15 * (1 - c4), "c4per": crop * 0.15 * c4, "c3nfx": crop * 0.12,
        "pastr": pasture * (1 - rangeland), "range": pasture * rangeland,
    }
    fill = np.float32(1e20)
    return {name: np.where(has_land, parts[name], fill).astype(np.float32) for name in ds.LUH2_STATES}
