"""Crosswalks from the emulator's land-use classes to the tile types a host land scheme consumes.

A crosswalk is linear: each output type takes, per fine pixel, a weight of each class (which may
depend on the pixel's climate). Host values are area-weighted over the fine pixels of each host
cell, so they inherit the exact conservation of the class fractions.

* ``ecland`` (ECLand / H-TESSEL, the IFS land scheme): ``cvh`` and ``cvl``, the high- and
  low-vegetation cover of the grid box (0–1), and ``lai_hv`` / ``lai_lv``, the mean LAI over the
  high / low vegetation of the box (m2 m-2; 0 where there is none).
* ``clm`` (CTSM/CLM style): ``pct_pft``, the percentage of each plant functional type and of bare,
  urban and lake land in the land of the host cell; 100 in every cell with land, 0 where none.
  Trees and grasses are split by climate (bio01, the annual mean temperature), as CLM's surface
  datasets do from climate rules.

Class weights (rows: the HILDA+ classes; a pixel's remaining land is bare ground in ECLand):

======================  =====  =====  ==============================================================
class                   cvh    cvl    CLM types
======================  =====  =====  ==============================================================
urban                   0      0.2    urban
cropland                0      1      c3_crop
pasture / rangeland     0      1      c3_grass (bio01 < 22 °C) or c4_grass
forest                  1      0      needleleaf_evergreen_boreal_tree (bio01 < 3 °C),
                                      broadleaf_deciduous_temperate_tree (3–20 °C),
                                      broadleaf_evergreen_tropical_tree (≥ 20 °C)
grass / shrubland       0      1      c3_grass or c4_grass as pasture
sparse vegetation       0      0.3    0.3 c3_grass or c4_grass, 0.7 bare
water                   0      0      lake
======================  =====  =====  ==============================================================
"""
from __future__ import annotations

import numpy as np

from .datasets import CLASS_INDEX, CROPLAND, FOREST, GRASS, PASTURE, SPARSE, URBAN, WATER

CROSSWALKS = ("none", "ecland", "clm")
ECLAND_COVERS = {"cvh": {FOREST: 1.0}, "cvl": {URBAN: 0.2, CROPLAND: 1.0, PASTURE: 1.0, GRASS: 1.0, SPARSE: 0.3}}
ECLAND_LAI = {"lai_hv": "cvh", "lai_lv": "cvl"}  # LAI field → the cover it is averaged over
CLM_TYPES = ("bare", "needleleaf_evergreen_boreal_tree", "broadleaf_deciduous_temperate_tree",
             "broadleaf_evergreen_tropical_tree", "c3_grass", "c4_grass", "c3_crop", "urban", "lake")
SPARSE_VEGETATED = 0.3
BOREAL_MAX_C, TROPICAL_MIN_C, C4_MIN_C = 3.0, 20.0, 22.0


def _class(fractions: np.ndarray, code: int) -> np.ndarray:
    return fractions[CLASS_INDEX[code]]


def ecland_covers(fractions: np.ndarray) -> dict[str, np.ndarray]:
    """``cvh``, ``cvl`` per fine pixel (H, W) from class fractions (8, H, W)."""
    return {name: sum(w * _class(fractions, code) for code, w in weights.items())
            for name, weights in ECLAND_COVERS.items()}


def clm_types(fractions: np.ndarray, bio01: np.ndarray) -> np.ndarray:
    """Share of each of :data:`CLM_TYPES` per fine pixel (9, H, W) from class fractions (8, H, W) and
    the annual mean temperature (degC); sums to the pixel's land (non-ocean) share."""
    out = np.zeros((len(CLM_TYPES),) + fractions.shape[1:])
    t = np.asarray(bio01, dtype=np.float64)
    forest = _class(fractions, FOREST)
    grassy = _class(fractions, PASTURE) + _class(fractions, GRASS) + SPARSE_VEGETATED * _class(fractions, SPARSE)
    c4 = t >= C4_MIN_C
    index = CLM_TYPES.index
    out[index("bare")] = (1.0 - SPARSE_VEGETATED) * _class(fractions, SPARSE)
    out[index("needleleaf_evergreen_boreal_tree")] = forest * (t < BOREAL_MAX_C)
    out[index("broadleaf_deciduous_temperate_tree")] = forest * ((t >= BOREAL_MAX_C) & (t < TROPICAL_MIN_C))
    out[index("broadleaf_evergreen_tropical_tree")] = forest * (t >= TROPICAL_MIN_C)
    out[index("c3_grass")] = grassy * ~c4
    out[index("c4_grass")] = grassy * c4
    out[index("c3_crop")] = _class(fractions, CROPLAND)
    out[index("urban")] = _class(fractions, URBAN)
    out[index("lake")] = _class(fractions, WATER)
    return out


def field_levels(crosswalk: str) -> dict[str, list[str]]:
    """The host fields a crosswalk adds, with their level names."""
    if crosswalk == "ecland":
        return {name: [name] for name in (*ECLAND_COVERS, *ECLAND_LAI)}
    if crosswalk == "clm":
        return {"pct_pft": list(CLM_TYPES)}
    return {}


def landuse_fields(crosswalk: str) -> tuple[str, ...]:
    """The crosswalk's fields that change with the land use (the others change with LAI)."""
    return {"ecland": tuple(ECLAND_COVERS), "clm": ("pct_pft",)}.get(crosswalk, ())
