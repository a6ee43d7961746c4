"""Propagation with the real bundled LiteMedSAM on a few slices of the shared CT (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg_ct_full"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (DATA / "example_ct.nii.gz").is_file(), reason="shared data not present"
    ),
]


def test_litemedsam_propagates_the_spleen_over_neighbouring_slices():
    pytest.importorskip("torch")
    from napari_medsam.io.nifti import load_nifti
    from napari_medsam.model.engine import load_engine
    from napari_medsam.prompts.intensity import IntensityWindow
    from napari_medsam.tasks.propagate import propagate
    from napari_medsam.tasks.propagate_options import PropagationOptions
    from napari_medsam.types import SliceMask

    image = np.asarray(load_nifti(DATA / "example_ct.nii.gz").data_zyx)
    truth = np.asarray(load_nifti(DATA / "example_seg_fast_force_split.nii.gz").data_zyx) == 1
    z0 = int(np.argmax(truth.sum(axis=(1, 2))))
    lo, hi = max(z0 - 2, 0), min(z0 + 3, image.shape[0])  # five slices around the largest
    engine = load_engine(device="cpu")
    window = IntensityWindow.from_level_width(40, 400)
    items = list(
        propagate(engine, image[lo:hi], window, z0 - lo, truth[z0], 1, "spleen-test",
                  PropagationOptions(min_area=1))
    )
    masks = {m.z + lo: m for m in items if isinstance(m, SliceMask)}
    assert sorted(masks) == [z for z in range(lo, hi) if z != z0]
    for z, m in masks.items():
        inter = np.count_nonzero(m.mask_yx & truth[z])
        dice = 2 * inter / (m.mask_yx.sum() + truth[z].sum())
        assert dice > 0.75, (z, dice)
        assert m.logits_lowres.shape == (256, 256) and 0.0 < m.score <= 1.5
