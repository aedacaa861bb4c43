"""The emulators give the same bits whatever the torch thread count (ranks × threads vary with the layout)."""
import numpy as np
import pytest
import torch

from ai4land_coupler.emulators import load_emulator


@pytest.mark.parametrize("kind, name", [("landuse", "landuse_unet_v1"), ("lai", "lai_unet_v1")])
def test_shipped_emulators_are_thread_count_invariant(kind, name):
    em = load_emulator(kind, name)
    x = np.random.default_rng(0).normal(size=(4, em.in_channels, 64, 64)).astype(np.float32)
    before = torch.get_num_threads()
    outputs = []
    try:
        for threads in (1, 2, 3, 4, 6):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outputs.append(em.model(torch.from_numpy(x)).numpy().copy())
            outputs.append(em.predict_batch(x))  # the coupled path: channels-last
    finally:
        torch.set_num_threads(before)
    assert all(np.array_equal(outputs[0], o) for o in outputs[0::2])
    assert all(np.array_equal(outputs[1], o) for o in outputs[1::2])
    assert np.abs(outputs[1] - outputs[0]).max() <= 1e-5 * np.abs(outputs[0]).max()  # layouts differ by rounding
