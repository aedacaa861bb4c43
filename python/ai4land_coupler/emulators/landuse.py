"""Annual land-use / land-cover emulator: scenario year t + static features + map t−1 → map t.

Input channels (in order, see :func:`landuse_channels`):

* ``scenario_<group>`` (5): LUH2 states of year t through the crosswalk, block-upsampled;
* ``demand_<group>`` (5): scenario minus the area-weighted group fractions of the previous map
  over the same coarse cell, i.e. the net change the coarse cell asks for;
* ``cell_row`` / ``cell_col`` (2): position of the pixel inside its coarse cell, in (−0.5, 0.5),
  so that the network can tell neighbouring coarse cells apart;
* the static fields (``meta["static_names"]``);
* ``previous_<class>`` (8): one-hot of the previous map (all zero where it has no data, code 99).

With ``meta["film_names"]`` (the bioclimatic variables by default) those static channels also
condition every U-Net block through FiLM (:class:`~.unet.FiLM`).

The arrays given to :meth:`LandUseEmulator.inputs` must be aligned to the coarse cells (the
whole fine grid, or a piece starting and ending on coarse-cell edges).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..datasets import CLASS_CODES, CLASS_INDEX, GROUP_COLUMN, LANDUSE_CLASSES, NODATA, SCENARIO_GROUPS, WATER
from ..errors import EmulatorError
from .. import cells
from .checkpoint import Emulator, channel_normalisation
from .unet import UNet


# Class level → column of the conservation: the 5 scenario groups, then inland water; -1 for ocean.
CLASS_COLUMN = np.where(CLASS_CODES == WATER, len(SCENARIO_GROUPS), GROUP_COLUMN)


@dataclass(frozen=True)
class LandUseYear:
    """A year's land use on the fine grid (:meth:`LandUseEmulator.post_process`)."""

    probabilities: np.ndarray  #: (8, H, W) float64, projected on the scenario
    uncertainty: np.ndarray  #: (H, W) normalised entropy of the probabilities, 0 over the ocean
    group_shares: np.ndarray  #: (5, H/k, W/k) area-weighted share of each scenario group per coarse cell
    fine_map: np.ndarray  #: (H, W) uint8 allocated class codes


def _cell_fields(k: int, probs, scenario_fine, land_mask, area, dtype=np.float64) -> tuple:
    """(probabilities or logits as ``dtype`` (None: their own), the scenario per coarse cell (a
    strided view), land, area): the C-ordered float64 / bool arrays the cell kernels take, checked
    against each other."""
    land = np.ascontiguousarray(land_mask, dtype=bool)
    h, w = land.shape
    if h % k or w % k:
        raise EmulatorError(f"{h}x{w} fine cells do not tile coarse cells of {k}x{k}")
    scenario = np.asarray(scenario_fine)
    area = np.ascontiguousarray(area, dtype=np.float64)
    probs = np.ascontiguousarray(probs, dtype=dtype)
    if (scenario.shape != (len(SCENARIO_GROUPS), h, w) or area.shape != (h, w)
            or probs.shape != (len(CLASS_COLUMN), h, w)):
        raise EmulatorError(f"probabilities {probs.shape}, scenario {scenario.shape} and area {area.shape} "
                            f"do not match the land mask {(h, w)}")
    return probs, scenario[:, ::k, ::k], land, area


def _previous_codes(previous: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """The previous map's class codes for the cell kernels (no data where ``previous`` is None)."""
    if previous is None:
        return np.full(shape, NODATA, dtype=np.uint8)
    codes = np.asarray(previous)
    if codes.shape != shape:
        raise EmulatorError(f"the previous map has shape {codes.shape}, expected {shape}")
    if codes.dtype != np.uint8 and (codes.dtype.kind not in "iu" or codes.min(initial=0) < 0
                                    or codes.max(initial=0) >= CLASS_INDEX.size):
        raise EmulatorError(f"the previous map holds values outside the class codes 0..{CLASS_INDEX.size - 1}")
    return codes


def landuse_channels(static_names) -> list[str]:
    return ([f"scenario_{g}" for g in SCENARIO_GROUPS] + [f"demand_{g}" for g in SCENARIO_GROUPS]
            + ["cell_row", "cell_col"] + list(static_names) + [f"previous_{name}" for _, name in LANDUSE_CLASSES])


def class_levels(codes: np.ndarray) -> np.ndarray:
    """(H, W) int64 level in :data:`LANDUSE_CLASSES` of each class code of a map; -1 where it has
    no data (99)."""
    index = CLASS_INDEX[codes]
    if np.any((index < 0) & (codes != NODATA)):
        bad = np.unique(codes[(index < 0) & (codes != NODATA)]).tolist()
        raise EmulatorError(f"class map holds codes {bad} outside {CLASS_CODES.tolist()}")
    return index


def one_hot_classes(codes: np.ndarray) -> np.ndarray:
    """(8, H, W) float32 one-hot of a map of class codes; all zero where the map has no data (99)."""
    return (class_levels(codes)[None] == np.arange(len(LANDUSE_CLASSES))[:, None, None]).astype(np.float32)


def landuse_features(scenario_fine: np.ndarray, static: dict, prev_map: np.ndarray, area: np.ndarray, factor: int,
                     static_names, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                     out: np.ndarray | None = None, with_grid: bool = True) -> np.ndarray:
    """Inputs (C, H, W) float32, raw, or normalised as ``(raw - mean) / std`` per channel when
    ``mean`` and ``std`` (C) are given (one pass either way: :func:`.cells.landuse_inputs`);
    ``area``: the pixels' areas (any unit); ``out``: an array to write them into the leading
    corner of (:func:`.compiled.output_array`); without ``with_grid``, its :func:`grid_channels`
    are left as they are (written for an earlier year)."""
    scenario_fine = np.ascontiguousarray(scenario_fine, dtype=np.float32)
    prev_map = np.ascontiguousarray(prev_map)
    h, w = prev_map.shape
    if scenario_fine.shape != (len(SCENARIO_GROUPS), h, w):
        raise EmulatorError(f"scenario_fine has shape {scenario_fine.shape}, expected {(len(SCENARIO_GROUPS), h, w)}")
    if h % factor or w % factor:
        raise EmulatorError(f"land-use inputs of {h}x{w} fine cells do not tile coarse cells of {factor}x{factor}")
    missing = [n for n in static_names if n not in static]
    if missing:
        raise EmulatorError(f"static fields {missing} are missing (have {sorted(static)})")
    fields = tuple(np.ascontiguousarray(static[n], dtype=np.float32) for n in static_names)
    if np.shape(area) != (h, w) or any(f.shape != (h, w) for f in fields):
        raise EmulatorError(f"area {np.shape(area)} or a static field {[f.shape for f in fields]} is not {(h, w)}")
    if prev_map.dtype.kind not in "iu" or prev_map.min(initial=0) < 0 or prev_map.max(initial=0) >= CLASS_INDEX.size:
        class_levels(prev_map)  # raises on the codes outside the classes
    channels = 2 * len(SCENARIO_GROUPS) + 2 + len(static_names) + len(LANDUSE_CLASSES)
    mean, std = channel_normalisation(mean, std, channels)
    inputs, faults = cells.landuse_inputs(scenario_fine, prev_map, CLASS_INDEX, NODATA,
                                          np.ascontiguousarray(area, dtype=np.float64), fields, factor, GROUP_COLUMN,
                                          mean, std, out, with_grid)
    if faults[0]:
        raise EmulatorError(f"scenario_fine is not constant over aligned {factor}x{factor} coarse cells")
    if faults[1]:
        class_levels(prev_map)  # raises, naming the codes
    return inputs


def grid_channels(static_names) -> range:
    """The input channels that depend on the grid alone, the same every year: each pixel's place in
    its coarse cell, then the static fields."""
    first = 2 * len(SCENARIO_GROUPS)
    return range(first, first + 2 + len(static_names))


class LandUseEmulator(Emulator):
    kind = "landuse"
    classes = LANDUSE_CLASSES

    @classmethod
    def create(cls, *, static_names, film_names=(), coarse_factor: int, fine_resolution_deg: float, mean, std,
               widths=(16, 32, 64, 96), tile_size: int = 64) -> "LandUseEmulator":
        channels = landuse_channels(static_names)
        unknown = [n for n in film_names if n not in static_names]
        if unknown:
            raise EmulatorError(f"FiLM conditioning fields {unknown} are not among the static fields {list(static_names)}")
        meta = {
            "kind": cls.kind,
            "architecture": {"name": "unet", "in_channels": len(channels), "out_channels": len(LANDUSE_CLASSES),
                             "widths": list(widths), "output": "logits", "norm": "batch",
                             "film_names": list(film_names)},
            "classes": [[code, name] for code, name in LANDUSE_CLASSES],
            "channels": channels,
            "static_names": list(static_names),
            "normalisation": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
            "coarse_factor": int(coarse_factor),
            "fine_resolution_deg": float(fine_resolution_deg),
            "tile_size": int(tile_size),
        }
        return cls(cls.build_model(meta), meta)

    @classmethod
    def expected_channels(cls, meta: dict) -> list[str]:
        return landuse_channels(meta.get("static_names", ()))

    @classmethod
    def build_model(cls, meta: dict) -> UNet:
        arch = meta["architecture"]
        channels = landuse_channels(meta.get("static_names", ()))
        film = list(arch.get("film_names", ()))
        missing = [n for n in film if n not in channels]
        if missing:
            raise EmulatorError(f"FiLM conditioning fields {missing} are not input channels")
        return UNet(arch["in_channels"], arch["out_channels"], tuple(arch["widths"]),
                    film_channels=tuple(channels.index(n) for n in film))

    def inputs(self, scenario_fine: np.ndarray, static: dict, prev_map: np.ndarray, area: np.ndarray,
               out: np.ndarray | None = None, with_grid: bool = True) -> np.ndarray:
        """Normalised network input (C, H, W) float32 for the year of ``scenario_fine``; in the
        leading corner of ``out`` if given (an :func:`~ai4land_coupler.inference.field_buffer`),
        leaving its :attr:`grid_channels` as they are without ``with_grid``."""
        return landuse_features(scenario_fine, static, prev_map, area, self.meta["coarse_factor"],
                                self.meta["static_names"], self._mean, self._std, out, with_grid)

    @property
    def grid_channels(self) -> range:
        """:func:`grid_channels` of this emulator's inputs."""
        return grid_channels(self.meta["static_names"])

    @staticmethod
    def probabilities(logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, 8, h, w) from network logits, in :data:`LANDUSE_CLASSES` order."""
        return torch.softmax(logits, dim=1)

    @staticmethod
    def finish(logits: np.ndarray) -> np.ndarray:
        """Class probabilities (8, H, W) from blended logits: softmax in float64 numpy."""
        z = logits.astype(np.float64)
        z = np.exp(z - z.max(axis=0, keepdims=True))
        return z / z.sum(axis=0, keepdims=True)

    @staticmethod
    def masked_probabilities(logits: np.ndarray, land_mask: np.ndarray) -> np.ndarray:
        """``apply_mask(finish(logits), land_mask)`` in one pass (the softmax over the land classes)."""
        return cells.masked_softmax(np.ascontiguousarray(logits), np.ascontiguousarray(land_mask, dtype=bool))

    @staticmethod
    def apply_mask(probs: np.ndarray, land_mask: np.ndarray) -> np.ndarray:
        """Ocean pixels: ocean = 1. Land pixels: ocean = 0, the others renormalised to sum 1."""
        out = np.array(probs, dtype=np.float64, copy=True)
        land = np.asarray(land_mask, dtype=bool)
        out[0][land] = 0.0
        total = out[1:].sum(axis=0)
        out[:, land] /= np.maximum(total[land], np.finfo(np.float64).tiny)
        out[:, ~land] = 0.0
        out[0][~land] = 1.0
        return out

    def conserve(self, probs: np.ndarray, scenario_fine: np.ndarray, land_mask: np.ndarray, area: np.ndarray, *,
                 iterations: int = 30, in_place: bool = False) -> np.ndarray:
        """The projection onto the scenario: probabilities (8, H, W) float64 whose area-weighted
        expected share of each scenario group in every coarse cell equals the scenario's.

        With ``a`` the pixel areas and ``A`` the coarse cell's area, afterwards, for every coarse cell
        and group g (and inland water, which takes the rest of the cell's land):
        ``Σ_pixels a · Σ_{class ∈ g} p / A = scenario_g`` to rounding (≈1e-15). Steps: up to
        ``iterations`` rounds of iterative proportional fitting (one factor per cell and group, then
        each pixel renormalised; fewer where a cell's shares already meet the targets to rounding),
        then an exact correction that removes each group's remaining excess in proportion to its
        mass at each pixel and gives it to the groups in deficit (split among
        their classes as at the pixel, or as in the cell where the pixel has none). Ocean pixels
        are left as they are. Apply after :meth:`apply_mask`; arrays aligned to coarse cells as
        for :meth:`inputs`. Where the scenario asks for more than the cell's land (real LUH2 and
        the fine land mask can disagree), its groups are scaled down to fit. ``in_place``: project
        ``probs`` itself where it is C-ordered float64 (and return it), instead of a copy.
        """
        p, scenario, land, area = _cell_fields(self.meta["coarse_factor"], probs, scenario_fine, land_mask, area)
        p = p.copy() if np.shares_memory(p, probs) and not in_place else p
        cells.conserve(p, scenario, land, area, self.meta["coarse_factor"], CLASS_COLUMN, iterations)
        return p

    def allocate(self, probs: np.ndarray, scenario_fine: np.ndarray, land_mask: np.ndarray, area: np.ndarray,
                 previous: np.ndarray | None = None) -> np.ndarray:
        """The fine class map (H, W) uint8 whose group areas in every coarse cell are the scenario's to
        within one pixel: demand-constrained allocation, as in land-use allocation models (CLUE).

        Per coarse cell, the (pixel, group) pairs are taken in decreasing order of the group's
        probability at the pixel; a pair is accepted while the pixel is free and the group still
        lacks at least half the pixel's area. Pixels left over take their most probable group.
        Within its group a pixel keeps its class of the ``previous`` map when that is in the group
        (the scenario says how much land each use takes, not whether natural land is grass or
        sparse), and otherwise takes its most probable class. Ocean pixels stay ocean.
        """
        p, scenario, land, area = _cell_fields(self.meta["coarse_factor"], probs, scenario_fine, land_mask, area)
        return cells.allocate(p, scenario, land, area, self.meta["coarse_factor"], CLASS_COLUMN,
                              _previous_codes(previous, land.shape), CLASS_INDEX, CLASS_CODES)

    def post_process(self, logits: np.ndarray, scenario_fine: np.ndarray, land_mask: np.ndarray, area: np.ndarray,
                     previous: np.ndarray | None = None, *, iterations: int = 30) -> "LandUseYear":
        """The year's land use from the blended network logits (8, H, W), in one pass over the coarse
        cells: the bits of :meth:`masked_probabilities`, :meth:`conserve`, :meth:`allocate` and
        :meth:`uncertainty` in turn, and the group shares that the conservation check compares with
        the scenario (:func:`~ai4land_coupler.datasets.group_shares` of the probabilities)."""
        logits, scenario, land, area = _cell_fields(self.meta["coarse_factor"], logits, scenario_fine, land_mask, area,
                                                    dtype=None)
        probs, uncertainty, shares, fine_map = cells.post(
            logits, scenario, land, area, self.meta["coarse_factor"], CLASS_COLUMN, iterations,
            _previous_codes(previous, land.shape), CLASS_INDEX, CLASS_CODES, len(SCENARIO_GROUPS))
        return LandUseYear(probs, uncertainty, shares, fine_map)

    @staticmethod
    def uncertainty(probs: np.ndarray, land_mask: np.ndarray) -> np.ndarray:
        """Per-pixel predictive uncertainty (H, W) in [0, 1]: the entropy of the class probabilities
        over the 7 land classes divided by log 7 (0 certain, 1 uniform); 0 over the ocean."""
        return cells.normalised_entropy(np.ascontiguousarray(probs, dtype=np.float64),
                                        np.ascontiguousarray(land_mask, dtype=bool))
