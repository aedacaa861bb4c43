"""Safe emulator checkpoints: weights in safetensors, metadata in a JSON sidecar. Never pickle.

``<stem>.safetensors`` holds the tensors; ``<stem>.json`` holds kind, architecture, classes,
input channels, normalisation, grid, tile size, training data hashes, seed, metrics, software
version and the sha256 of the weights file (checked on load).
"""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from ..datasets import sha256_file
from ..errors import EmulatorError

FORMAT = "ai4land-emulator"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # pickle protocol ≥ 2, torch.save zip archive
SAFETENSORS_HEADER_START = b"{"  # after the 8-byte header length
REQUIRED_META = ("kind", "architecture", "channels", "normalisation", "tile_size")


def software_version() -> str:
    try:
        return metadata.version("ai4land-coupler")
    except metadata.PackageNotFoundError:
        import ai4land_coupler

        return getattr(ai4land_coupler, "__version__", "unknown")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, sidecar) for a path given as ``stem``, ``stem.safetensors`` or ``stem.json``."""
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise EmulatorError(f"{path}: refusing a pickle-based checkpoint; emulators load only safetensors + JSON")
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return Path(f"{stem}.safetensors"), Path(f"{stem}.json")


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict) -> tuple[Path, Path]:
    weights, sidecar = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
    full = dict(meta, format=FORMAT, format_version=FORMAT_VERSION, software_version=software_version(),
                weights_file=weights.name, weights_sha256=sha256_file(weights))
    sidecar.write_text(json.dumps(full, indent=1, sort_keys=True) + "\n")
    return weights, sidecar


def read_checkpoint(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Checked (state_dict, meta) of an emulator of ``kind``; :class:`EmulatorError` otherwise."""
    weights, sidecar = checkpoint_paths(path)
    if not weights.is_file():
        raise EmulatorError(f"{weights}: emulator weights not found")
    with open(weights, "rb") as f:
        head = f.read(9)
    if head[8:9] != SAFETENSORS_HEADER_START:
        if head.startswith(PICKLE_MAGIC):
            raise EmulatorError(f"{weights}: looks like a pickle/torch.save file; refusing to unpickle "
                                f"(safetensors only)")
        raise EmulatorError(f"{weights}: not a safetensors file (no safetensors header); emulators load only "
                            f"safetensors + JSON and never unpickle")
    if not sidecar.is_file():
        raise EmulatorError(f"{sidecar}: emulator metadata (JSON sidecar) not found")
    try:
        meta = json.loads(sidecar.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmulatorError(f"{sidecar}: corrupt emulator metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise EmulatorError(f"{sidecar}: not an {FORMAT} metadata file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise EmulatorError(f"{sidecar}: format version {meta.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise EmulatorError(f"{sidecar}: metadata lacks {missing}")
    if meta["kind"] != kind:
        raise EmulatorError(f"{sidecar}: is a '{meta['kind']}' emulator, expected '{kind}'")
    if sha256_file(weights) != meta.get("weights_sha256"):
        raise EmulatorError(f"{weights}: sha256 differs from the one recorded in {sidecar.name} (corrupt or replaced file)")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise EmulatorError(f"{weights}: corrupt safetensors file ({exc})") from exc
    return state, meta


def _channel_difference(have: list[str], want: list[str]) -> str:
    if len(have) != len(want):
        missing, unexpected = [c for c in want if c not in have], [c for c in have if c not in want]
        return f"{len(have)} channels, expected {len(want)} (missing {missing}, unexpected {unexpected})"
    k = next(i for i, (a, b) in enumerate(zip(have, want)) if a != b)
    return f"channel {k} is '{have[k]}', expected '{want[k]}'"


#: The arithmetics :attr:`Emulator.precision` takes.
PRECISIONS = ("fp32", "bf16")


def channel_normalisation(mean, std, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``mean`` and ``std`` as flat float32 arrays of ``channels`` values; None: 0 and 1 (raw)."""
    mean = np.zeros(channels, np.float32) if mean is None else np.asarray(mean, np.float32).ravel()
    std = np.ones(channels, np.float32) if std is None else np.asarray(std, np.float32).ravel()
    if mean.size != channels or std.size != channels:
        raise EmulatorError(f"{mean.size} means and {std.size} standard deviations for {channels} input channels")
    return mean, std


def _tensors_of(module: nn.Module) -> list[torch.Tensor]:
    """Every parameter and buffer of ``module`` and its submodules (``parameters()`` and
    ``buffers()`` walk the modules through generators, 6× slower: this runs on every batch)."""
    stack, tensors = [module], []
    while stack:
        m = stack.pop()
        tensors += [t for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]
        stack += [s for s in m._modules.values() if s is not None]
    return tensors


class Emulator:
    """A U-Net with its metadata: input channels, their normalisation, classes, grid and tile size."""

    kind = ""

    def __init__(self, model: nn.Module, meta: dict):
        self.model = model.eval().to(memory_format=torch.channels_last)  # oneDNN's fastest layout here
        self._network: tuple | None = None  # (key of the model's tensors, its inference network)
        self._precision = "fp32"
        self.meta = meta
        norm = meta["normalisation"]
        self._mean = np.asarray(norm["mean"], dtype=np.float32)[:, None, None]
        self._std = np.asarray(norm["std"], dtype=np.float32)[:, None, None]
        if not (len(self._mean) == len(self._std) == self.in_channels == meta["architecture"]["in_channels"]):
            raise EmulatorError(f"{self.kind} emulator: {self.in_channels} channels, {len(self._mean)} normalisation "
                                f"means and {meta['architecture']['in_channels']} network inputs disagree")

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.kind))

    @property
    def channels(self) -> list[str]:
        return list(self.meta["channels"])

    @property
    def in_channels(self) -> int:
        return len(self.meta["channels"])

    @property
    def tile_size(self) -> int:
        return int(self.meta["tile_size"])

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        out = np.subtract(raw, self._mean, dtype=np.float32)
        out /= self._std
        return out

    @property
    def precision(self) -> str:
        """The arithmetic of :meth:`predict_batch`: ``"fp32"``, or ``"bf16"`` (autocast: the
        convolutions and matrix products in bfloat16, the rest in float32; the output float32)."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise EmulatorError(f"{self.name}: precision {value!r} is not one of {', '.join(PRECISIONS)}")
        self._precision = value

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """The network on a batch (B, C, tile, tile) float32 → (B, K, tile, tile) float32, on the
        model's device, in eval mode, through :meth:`inference_network`, in :attr:`precision`.
        The batch may be any strided view (a row of tiles is one of the slab's field); it is only read."""
        network = self.inference_network()
        device = next(network.parameters()).device
        try:
            # channels-last: oneDNN's fastest layout, the same bits at any thread count
            with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                batch = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
                return network(batch).float().contiguous().cpu().numpy()
        except Exception as exc:
            raise EmulatorError(f"{self.name}: inference failed on a batch of shape {x.shape}: {exc}") from exc

    def inference_network(self) -> nn.Module:
        """:attr:`model` with its BatchNorms folded into the weights (``UNet.folded``), channels-last;
        made again whenever a parameter or buffer of :attr:`model` has changed (training, loading)."""
        key = tuple((id(t), t.data_ptr(), t._version) for t in _tensors_of(self.model))  # a new device: new data
        if self._network is None or self._network[0] != key:
            self._network = (key, self.model.folded().to(memory_format=torch.channels_last))
        return self._network[1]

    @staticmethod
    def finish(raw: np.ndarray) -> np.ndarray:
        """The physical field (K, H, W) from the network output blended over tiles (numpy, float64,
        so that it is the same bits whatever the torch thread count)."""
        raise NotImplementedError

    @classmethod
    def expected_channels(cls, meta: dict) -> list[str]:
        raise NotImplementedError

    @classmethod
    def build_model(cls, meta: dict) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "Emulator":
        state, meta = read_checkpoint(path, cls.kind)
        expected = cls.expected_channels(meta)
        if list(meta["channels"]) != expected:
            raise EmulatorError(f"{path}: input channels do not match those of a {cls.kind} emulator built from its "
                                f"metadata: {_channel_difference(list(meta['channels']), expected)}")
        try:
            model = cls.build_model(meta)
            model.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise EmulatorError(f"{path}: weights do not fit the architecture in the metadata ({exc})") from exc
        try:
            model.to(torch.device(device))
        except (RuntimeError, AssertionError, TypeError) as exc:
            raise EmulatorError(f"{path}: cannot move the emulator to device {device!r} ({exc})") from exc
        try:
            return cls(model, meta)
        except EmulatorError as exc:
            raise EmulatorError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> tuple[Path, Path]:
        return save_checkpoint(path, self.model, self.meta)
