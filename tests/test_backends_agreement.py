"""The fast path gives the same masks as torch fp32: LiteMedSAM, box prompts, the phantom.

Acceptance of the fast backend: mean Dice between the two paths >= 0.99 and
>= 0.97 on every slice. Skipped where OpenVINO is not installed. The
shared-data version of this table is ``benchmarks/backend_agreement.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("openvino")

from napari_medsam.evaluation.agreement import (  # noqa: E402
    box_agreement,
    object_slices,
    summarize_agreement,
)
from napari_medsam.io.phantom import make_phantom  # noqa: E402
from napari_medsam.model.engine import SamEngine, load_engine  # noqa: E402
from napari_medsam.prompts.intensity import auto_window  # noqa: E402


@pytest.mark.slow
def test_openvino_masks_agree_with_torch_fp32_on_the_phantom(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSAM_CACHE_DIR", str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        reference = load_engine(device="cpu", backend="torch")
        fast = SamEngine(
            reference.model, reference.config, device="cpu", backend="openvino", background=False
        )
        assert fast.backend.startswith("openvino")
        phantom = make_phantom(shape_zyx=(24, 128, 128), spacing_zyx_mm=(4.0, 2.0, 2.0))
        labels = [int(v) for v in np.unique(phantom.labels_zyx) if v > 0]
        cases = object_slices(phantom.labels_zyx, labels, min_area=40, max_slices=2)
        rows = box_agreement(
            reference,
            fast,
            phantom.image_zyx,
            phantom.labels_zyx,
            auto_window(phantom.image_zyx),
            cases,
        )
    finally:
        torch.set_num_threads(threads)
    summary = summarize_agreement(rows)
    assert summary["n_slices"] >= 8
    assert summary["mean_dice_ref_gt"] > 0.7  # the masks are real segmentations
    worst = min(rows, key=lambda r: r.dice_between)
    assert summary["mean_dice_between"] >= 0.99, summary
    assert worst.dice_between >= 0.97, worst
