"""Do two engines give the same masks? Box prompts on every object slice, Dice between them.

Used to check a fast backend against the torch fp32 reference: the CI test on
the phantom (``tests/test_backends_agreement.py``) and the shared-data table
(``benchmarks/backend_agreement.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_medsam.evaluation.metrics import dice
from napari_medsam.prompts.geometry import box_from_mask
from napari_medsam.types import SlicePrompt


@dataclass(frozen=True)
class SliceAgreement:
    """One object slice: Dice between the two engines' masks, and each one's Dice to the truth."""

    label: int
    z: int
    dice_between: float
    dice_ref_gt: float
    dice_fast_gt: float


def _dice_or_one(a_yx: np.ndarray, b_yx: np.ndarray) -> float:
    return 1.0 if not a_yx.any() and not b_yx.any() else float(dice(a_yx, b_yx))


def object_slices(
    labels_zyx: np.ndarray, labels: Sequence[int], min_area: int = 50, max_slices: int | None = None
) -> list[tuple[int, int]]:
    """(label, z) of every slice where the label covers >= ``min_area`` pixels.

    ``max_slices``: at most this many per label, evenly spaced through its extent.
    """
    out = []
    for label in labels:
        areas = (labels_zyx == label).sum(axis=(1, 2))
        zs = np.flatnonzero(areas >= min_area)
        if max_slices is not None and len(zs) > max_slices:
            zs = zs[np.round(np.linspace(0, len(zs) - 1, max_slices)).astype(int)]
        out += [(int(label), int(z)) for z in zs]
    return out


def box_agreement(
    reference,
    fast,
    image_zyx: np.ndarray,
    labels_zyx: np.ndarray,
    window,
    cases: Sequence[tuple[int, int]],
    volume_key: object = "agreement",
) -> list[SliceAgreement]:
    """Segment each (label, z) case from its ground-truth box with both engines.

    Parameters
    ----------
    reference, fast : Engine
        E.g. the same model on torch fp32 and on OpenVINO bf16.
    image_zyx, labels_zyx : np.ndarray
        (Z, Y, X) image and integer labels on one grid.
    window : IntensityWindow
        Applied to each slice (``window.apply``).
    cases : sequence of (int, int)
        (label, z), e.g. from :func:`object_slices`.
    volume_key : hashable
        Prefix of the embedding cache keys (a slice is embedded once per engine).

    Returns
    -------
    list of SliceAgreement
    """
    out = []
    for label, z in cases:
        gt = labels_zyx[z] == label
        box = box_from_mask(gt)
        if box is None:
            continue
        image = window.apply(image_zyx[z])
        prompt = SlicePrompt(box_yxyx=box)
        key = (volume_key, z)
        a = reference.predict(image, prompt, cache_key=key).mask_yx
        b = fast.predict(image, prompt, cache_key=key).mask_yx
        out.append(
            SliceAgreement(label, z, _dice_or_one(a, b), float(dice(a, gt)), float(dice(b, gt)))
        )
    return out


def summarize_agreement(rows: Sequence[SliceAgreement]) -> dict:
    """Mean and minimum Dice between the engines, and mean Dice of each to the truth."""
    if not rows:
        return {"n_slices": 0}
    between = np.array([r.dice_between for r in rows])
    return {
        "n_slices": len(rows),
        "mean_dice_between": float(between.mean()),
        "min_dice_between": float(between.min()),
        "mean_dice_ref_gt": float(np.mean([r.dice_ref_gt for r in rows])),
        "mean_dice_fast_gt": float(np.mean([r.dice_fast_gt for r in rows])),
    }
