"""U-Net emulators of land use / land cover (annual) and LAI (sub-annual), with safe checkpoints."""
from ..datasets import LANDUSE_CLASSES
from .checkpoint import Emulator, read_checkpoint, save_checkpoint
from .lai import LaiEmulator, lai_channels
from .landuse import LandUseEmulator, landuse_channels
from .registry import SHIPPED, WEIGHTS_DIR, emulator_path, load_emulator
from .unet import UNet

__all__ = [
    "LANDUSE_CLASSES", "Emulator", "LaiEmulator", "LandUseEmulator", "SHIPPED", "UNet", "WEIGHTS_DIR",
    "emulator_path", "lai_channels", "landuse_channels", "load_emulator", "read_checkpoint", "save_checkpoint",
]
