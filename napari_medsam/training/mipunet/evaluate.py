"""Held-out figures: Dice and seconds of a model on its scan grid, beside a HU threshold.

The threshold baseline (``HU >= t``) has its ``t`` fitted on the training volumes
only; the best ``t`` on the held-out volume is reported too, as the most any
single threshold could do there (an upper bound, not a fair baseline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_medsam.model.mipunet.inference import segment_volume
from napari_medsam.training.mipunet.data import GridVolume

__all__ = ["THRESHOLDS_HU", "dice", "evaluate_model", "fit_threshold", "threshold_dice"]

#: Candidate thresholds of the baseline, HU.
THRESHOLDS_HU = tuple(range(50, 501, 25))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def threshold_dice(volume: GridVolume, threshold_hu: float) -> float:
    """Dice of ``HU >= threshold_hu`` against the volume's target, on its scan grid."""
    return dice(volume.hu_zyx >= threshold_hu, volume.bone_zyx)


def fit_threshold(volumes: Sequence[GridVolume]) -> tuple[float, float]:
    """The candidate threshold with the best mean Dice over ``volumes``: ``(t_hu, dice)``."""
    if not volumes:
        raise ValueError("no volumes to fit a threshold on")
    scores = {t: float(np.mean([threshold_dice(v, t) for v in volumes])) for t in THRESHOLDS_HU}
    best = max(scores, key=scores.get)
    return float(best), scores[best]


def evaluate_model(
    model: nn.Module,
    heldout: Sequence[GridVolume],
    train: Sequence[GridVolume],
    threads: int | None = None,
) -> dict[str, Any]:
    """Dice and seconds per held-out volume, with both threshold figures.

    Parameters
    ----------
    model : MipUNet or SliceUNet
    heldout, train : sequences of GridVolume
        Scored volumes; volumes the baseline threshold is fitted on.
    threads : int, optional
        torch CPU threads while timing.

    Returns
    -------
    dict
        ``{"volumes": [{name, dice, seconds, threshold_dice, best_threshold_dice, ...}],
        "mean_dice", "mean_threshold_dice", "threshold_hu", "beats_baseline"}``.
    """
    if threads:
        torch.set_num_threads(threads)
    t_hu, train_dice = fit_threshold(train)
    rows = []
    for vol in heldout:
        result = segment_volume(model, vol.hu_zyx, vol.spacing_zyx_mm)
        best_t = max(THRESHOLDS_HU, key=lambda t: threshold_dice(vol, t))
        rows.append({
            "name": vol.name,
            "dice": round(dice(result.mask_zyx, vol.bone_zyx), 4),
            "seconds": round(result.seconds, 2),
            "threshold_dice": round(threshold_dice(vol, t_hu), 4),
            "best_threshold_hu": float(best_t),
            "best_threshold_dice": round(threshold_dice(vol, best_t), 4),
            "voxels_true": int(vol.bone_zyx.sum()),
            "voxels_pred": int(result.mask_zyx.sum()),
        })  # fmt: skip
    mean = float(np.mean([r["dice"] for r in rows])) if rows else float("nan")
    base = float(np.mean([r["threshold_dice"] for r in rows])) if rows else float("nan")
    best = float(np.mean([r["best_threshold_dice"] for r in rows])) if rows else float("nan")
    return {
        "volumes": rows,
        "mean_dice": round(mean, 4),
        "mean_threshold_dice": round(base, 4),
        "mean_best_threshold_dice": round(best, 4),
        "threshold_hu": t_hu,
        "threshold_train_dice": round(train_dice, 4),
        "beats_baseline": bool(mean > best),
    }
