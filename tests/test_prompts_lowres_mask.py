"""The windowed low-res -> slice mask equals the full resampling's, and is empty when it should be."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from napari_medsam.prompts.geometry import RESIZE_LONGEST_SIDE, RESIZE_STRETCH, lowres_logits_to_slice
from napari_medsam.prompts.lowres_mask import lowres_logits_to_mask


def _blob_logits(rng, n=256):
    yy, xx = np.mgrid[:n, :n]
    cy, cx, r = rng.uniform(20, n - 20), rng.uniform(20, n - 20), rng.uniform(3, 60)
    return (r - np.hypot(yy - cy, xx - cx)) / 4 + rng.normal(0, 0.3, (n, n))


@pytest.mark.parametrize("resize,side", [(RESIZE_STRETCH, 256), (RESIZE_LONGEST_SIDE, 1024)])
@pytest.mark.parametrize("hw", [(512, 512), (101, 122), (300, 87), (256, 256)])
def test_same_mask_as_the_full_resampling(resize, side, hw):
    rng = np.random.default_rng(hash((resize, hw)) % 2**32)
    for _ in range(4):
        logits = _blob_logits(rng).astype(np.float32)
        full = lowres_logits_to_slice(logits, hw, side, resize) > 0
        fast = lowres_logits_to_mask(logits, hw, side, resize)
        assert fast.shape == hw and fast.dtype == bool
        assert np.array_equal(fast, full)


def test_empty_and_scattered_logits():
    hw = (512, 400)
    assert not lowres_logits_to_mask(np.full((256, 256), -3.0), hw, 256, RESIZE_STRETCH).any()
    logits = np.full((256, 256), -1.0)
    logits[3, 250] = logits[200, 7] = 5.0  # two far-apart specks: the window spans both
    full = lowres_logits_to_slice(logits, hw, 256, RESIZE_STRETCH) > 0
    assert np.array_equal(lowres_logits_to_mask(logits, hw, 256, RESIZE_STRETCH), full)
    assert full.any()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="BLAS threads need 2 cores")
def test_no_blas_threads_left_spinning():
    """The mask is made without a BLAS product: numpy's OpenBLAS threads spin ~0.1 s after one."""
    logits = np.full((256, 256), -5.0, np.float32)
    logits[60:200, 50:180] = 3.0
    time.sleep(0.5)  # threads woken by an earlier test settle
    for _ in range(3):
        assert lowres_logits_to_mask(logits, (512, 512), 256, RESIZE_STRETCH).sum() > 0
    cpu0 = time.process_time()
    time.sleep(0.15)
    burnt_ms = 1000 * (time.process_time() - cpu0)
    assert burnt_ms < 15, f"{burnt_ms:.0f} ms of CPU burnt while idle after the call"
