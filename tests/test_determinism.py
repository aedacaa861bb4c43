"""The emulators give the same bits whatever the torch thread count (ranks × threads vary with the layout)."""
import numpy as np
import pytest
import torch

from ai4land_coupler.emulators import load_emulator


@pytest.mark.parametrize("kind, name", [("landuse", "landuse_unet_v1"), ("lai", "lai_unet_v1")])
def test_shipped_emulators_are_thread_count_invariant(kind, name):
    em = load_emulator(kind, name)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, em.in_channels, 64, 64)).astype(np.float32))
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outputs.append(em.model(x).numpy().copy())
    finally:
        torch.set_num_threads(before)
    assert all(np.array_equal(outputs[0], o) for o in outputs[1:])
