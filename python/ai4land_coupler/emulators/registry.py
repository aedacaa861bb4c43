"""Shipped emulators by name, and loading by name or path."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import EmulatorError
from .checkpoint import Emulator, checkpoint_paths
from .lai import LaiEmulator
from .landuse import LandUseEmulator

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = {"landuse_unet_v1": "landuse", "lai_unet_v1": "lai"}
EMULATOR_TYPES: dict[str, type[Emulator]] = {"landuse": LandUseEmulator, "lai": LaiEmulator}


def emulator_path(name_or_path: str | Path) -> Path:
    """Checkpoint stem of a shipped emulator name, or the path itself."""
    return WEIGHTS_DIR / str(name_or_path) if str(name_or_path) in SHIPPED else Path(name_or_path)


def load_emulator(kind: str, name_or_path: str | Path, device: str | torch.device = "cpu") -> Emulator:
    """A shipped emulator (``"landuse_unet_v1"``, ``"lai_unet_v1"``) or a checkpoint path, in eval mode on ``device``."""
    if kind not in EMULATOR_TYPES:
        raise EmulatorError(f"unknown emulator kind '{kind}' (expected one of {sorted(EMULATOR_TYPES)})")
    if SHIPPED.get(str(name_or_path), kind) != kind:
        raise EmulatorError(f"shipped emulator '{name_or_path}' is a '{SHIPPED[str(name_or_path)]}' emulator, not '{kind}'")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EmulatorError(f"invalid torch device {device!r}: {exc}") from exc
    path = emulator_path(name_or_path)
    weights = checkpoint_paths(path)[0]
    if str(name_or_path) not in SHIPPED and len(path.parts) == 1 and not weights.is_file():
        shipped = ", ".join(name for name, k in SHIPPED.items() if k == kind)
        raise EmulatorError(f"'{name_or_path}' is neither a shipped {kind} emulator ({shipped}) nor a checkpoint: "
                            f"{weights.resolve()} not found")
    return EMULATOR_TYPES[kind].from_checkpoint(path, device)


def describe_shipped() -> list[dict]:
    """One row per shipped emulator: name, kind, inputs, held-out skill (from the metadata; no weights loaded)."""
    import json

    rows = []
    for name, kind in sorted(SHIPPED.items()):
        meta = json.loads(checkpoint_paths(WEIGHTS_DIR / name)[1].read_text())
        rows.append({"name": name, "kind": kind, "channels": len(meta["channels"]),
                     "film": meta["architecture"].get("film_names", []),
                     "resolution_deg": meta.get("fine_resolution_deg"),
                     "metrics": meta.get("metrics", {}), "software_version": meta.get("software_version")})
    return rows
