"""Monthly (or any sub-annual cadence) LAI emulator: class fractions + drivers + season → LAI.

Input channels (see :func:`lai_channels`): ``fraction_<class>`` (8, the land-use probabilities or a
one-hot map), the drivers ``tas`` K, ``pr`` kg m-2 s-1, ``rsds`` W m-2 and ``season_sin`` /
``season_cos`` of 2π·day_of_year/365. The hemisphere needs no extra channel: the drivers carry
the local season. The network ends in a softplus, so LAI ≥ 0 by construction.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..compiled import in_blocks, kernel, output_array
from ..datasets import DRIVER_NAMES, LANDUSE_CLASSES
from ..errors import EmulatorError
from .checkpoint import Emulator, channel_normalisation
from .unet import UNet


def lai_channels() -> list[str]:
    return [f"fraction_{name}" for _, name in LANDUSE_CLASSES] + list(DRIVER_NAMES) + ["season_sin", "season_cos"]


def lai_features(class_fractions: np.ndarray, drivers: np.ndarray, day_of_year: float,
                 mean: np.ndarray | None = None, std: np.ndarray | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Inputs (C, H, W) float32, raw, or normalised as ``(raw - mean) / std`` per channel when
    ``mean`` and ``std`` (C) are given (one pass either way); ``out``: an array to write them
    into the leading corner of (:func:`.compiled.output_array`)."""
    class_fractions = np.ascontiguousarray(class_fractions, np.float32)
    drivers = np.ascontiguousarray(drivers, np.float32)
    if class_fractions.ndim != 3 or class_fractions.shape[0] != len(LANDUSE_CLASSES):
        raise EmulatorError(f"class_fractions has shape {class_fractions.shape}, expected ({len(LANDUSE_CLASSES)}, H, W)")
    if drivers.shape != (len(DRIVER_NAMES),) + class_fractions.shape[1:]:
        raise EmulatorError(f"drivers has shape {drivers.shape}, expected {(len(DRIVER_NAMES),) + class_fractions.shape[1:]}")
    channels = len(LANDUSE_CLASSES) + len(DRIVER_NAMES) + 2
    mean, std = channel_normalisation(mean, std, channels)
    angle = 2.0 * np.pi * float(day_of_year) / 365.0
    season = np.array([np.sin(angle), np.cos(angle)], np.float32)
    h, w = class_fractions.shape[1:]
    out = output_array(out, (channels, h, w))
    in_blocks(_lai_inputs, h, class_fractions, drivers, season, mean, std, out)
    return out[:, :h, :w]


@kernel
def _lai_inputs(classes, drivers, season, mean, std, out, first, end):
    """Rows [first, end) of ``out``: the classes, the drivers and the two season values, each
    channel as ``(raw - mean) / std``."""
    n, m, w = classes.shape[0], drivers.shape[0], classes.shape[2]
    for y in range(first, end):
        for c in range(n):
            for x in range(w):
                out[c, y, x] = (classes[c, y, x] - mean[c]) / std[c]
        for c in range(m):
            for x in range(w):
                out[n + c, y, x] = (drivers[c, y, x] - mean[n + c]) / std[n + c]
        for c in range(season.size):
            value = (season[c] - mean[n + m + c]) / std[n + m + c]
            for x in range(w):
                out[n + m + c, y, x] = value


@kernel
def _masked_softplus(raw, land):
    """float32 softplus log(1 + e^x), evaluated in float64, on land; 0 elsewhere."""
    out = np.zeros(raw.shape, dtype=np.float32)
    for y in range(raw.shape[0]):
        for x in range(raw.shape[1]):
            if land[y, x]:
                v = np.float64(raw[y, x])
                out[y, x] = max(v, 0.0) + np.log1p(np.exp(-abs(v)))
    return out


def lai_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """LAI ≥ 0 from the network output (training and whole-field evaluation)."""
    return nn.functional.softplus(raw)


class LaiEmulator(Emulator):
    kind = "lai"

    @classmethod
    def create(cls, *, fine_resolution_deg: float, mean, std, widths=(16, 32, 64, 96), tile_size: int = 64) -> "LaiEmulator":
        channels = lai_channels()
        meta = {
            "kind": cls.kind,
            "architecture": {"name": "unet", "in_channels": len(channels), "out_channels": 1,
                             "widths": list(widths), "output": "softplus, LAI in m2 m-2"},
            "classes": [[code, name] for code, name in LANDUSE_CLASSES],
            "channels": channels,
            "normalisation": {"mean": [float(v) for v in mean], "std": [float(v) for v in std]},
            "fine_resolution_deg": float(fine_resolution_deg),
            "tile_size": int(tile_size),
        }
        return cls(cls.build_model(meta), meta)

    @classmethod
    def expected_channels(cls, meta: dict) -> list[str]:
        return lai_channels()

    @classmethod
    def build_model(cls, meta: dict) -> UNet:
        arch = meta["architecture"]
        return UNet(arch["in_channels"], arch["out_channels"], tuple(arch["widths"]))

    def inputs(self, class_fractions: np.ndarray, drivers: np.ndarray, day_of_year: float,
               out: np.ndarray | None = None) -> np.ndarray:
        """Normalised network input (C, H, W) float32; in the leading corner of ``out`` if given
        (an :func:`~ai4land_coupler.inference.field_buffer`)."""
        return lai_features(class_fractions, drivers, day_of_year, self._mean, self._std, out)

    @staticmethod
    def finish(raw: np.ndarray) -> np.ndarray:
        """LAI (1, H, W) in m2 m-2 from the blended network output: softplus, in float64 numpy."""
        return np.logaddexp(0.0, raw.astype(np.float64))

    @staticmethod
    def masked_lai(raw: np.ndarray, land_mask: np.ndarray) -> np.ndarray:
        """``apply_mask(finish(raw)[0], land_mask)`` in one pass: LAI (H, W) float32."""
        return _masked_softplus(np.ascontiguousarray(raw[0]), np.ascontiguousarray(land_mask, dtype=bool))

    @staticmethod
    def apply_mask(lai: np.ndarray, land_mask: np.ndarray) -> np.ndarray:
        """LAI (H, W) with zero over the ocean."""
        return np.where(np.asarray(land_mask, dtype=bool), lai, 0.0).astype(np.float32)
