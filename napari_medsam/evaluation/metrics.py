"""Overlap metrics, per-case click records and their summaries (NoC@85/90, Dice@k).

A *case* is one object on one slice. Interactions are counted from 1: with
``--prompt box+clicks`` interaction 1 is the box and later ones are clicks.
After a case stops (target IoU reached, or no error pixel left) its last value
is carried forward to the click cap, as RITM's curves do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

NOC_THRESHOLDS = (0.85, 0.90)
DICE_AT = (1, 3, 5)


def overlap_counts(pred_yx: np.ndarray, gt_yx: np.ndarray) -> tuple[int, int, int]:
    """Return (intersection, predicted area, true area) in pixels of two (H, W) bool masks."""
    pred = np.asarray(pred_yx, bool)
    gt = np.asarray(gt_yx, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {gt.shape}")
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred)), int(np.count_nonzero(gt))


def iou(pred_yx: np.ndarray, gt_yx: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1.0 when both are empty."""
    inter, p, g = overlap_counts(pred_yx, gt_yx)
    union = p + g - inter
    return 1.0 if union == 0 else inter / union


def dice(pred_yx: np.ndarray, gt_yx: np.ndarray) -> float:
    """Dice coefficient of two bool masks; 1.0 when both are empty."""
    inter, p, g = overlap_counts(pred_yx, gt_yx)
    return 1.0 if p + g == 0 else 2.0 * inter / (p + g)


def noc(ious: Sequence[float], threshold: float, max_clicks: int) -> int:
    """Number of interactions to reach ``threshold`` IoU; a failure counts as ``max_clicks``.

    Parameters
    ----------
    ious : sequence of float
        IoU after interaction 1, 2, ... (may stop early).
    threshold : float
        Target IoU, e.g. 0.9.
    max_clicks : int
        The click cap.
    """
    for k, value in enumerate(ious[:max_clicks], start=1):
        if value >= threshold:
            return k
    return max_clicks


def carried(values: Sequence[float], k: int) -> float:
    """Value after interaction ``k`` (1-based), the last value carried forward past the end."""
    if not values:
        raise ValueError("a case has no interaction")
    return float(values[min(k, len(values)) - 1])


@dataclass
class CaseResult:
    """The record of one object on one slice.

    Attributes
    ----------
    label : int
    z : int
        Slice index along axis 0 of the reader's (Z, Y, X) array.
    area : int
        Object pixels on the slice.
    ious, dices : list of float
        After each interaction performed (length <= max_clicks).
    click_seconds : list of float
        Wall time of each prompt + decoder call on the cached embedding.
    embed_seconds : float
        Wall time of the slice embedding (0 if another case on the slice computed it).
    first_intersection, first_pred_area : int
        Overlap counts after interaction 1 (the box in box modes), for volume Dice.
    """

    label: int
    z: int
    area: int
    ious: list[float] = field(default_factory=list)
    dices: list[float] = field(default_factory=list)
    click_seconds: list[float] = field(default_factory=list)
    embed_seconds: float = 0.0
    first_intersection: int = 0
    first_pred_area: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def summarize(cases: Sequence[CaseResult], max_clicks: int, prompt: str) -> dict:
    """Summarise cases (one label, or all pooled with equal weight per case).

    Parameters
    ----------
    cases : sequence of CaseResult
    max_clicks : int
        The click cap (NoC of a failure, length of the IoU curve).
    prompt : str
        ``"clicks"``, ``"box"`` or ``"box+clicks"``. With ``"box"`` there is one
        interaction only, so NoC fields are None and ``box_dice`` is the figure.

    Returns
    -------
    dict
        ``n_cases``; ``noc85``, ``noc90`` (mean), ``n_fail90`` (cases that reach
        the cap without IoU >= 0.90); ``dice_at`` {"1", "3", "5"} mean Dice after
        that many interactions; ``box_dice`` / ``box_iou`` (mean over cases of
        interaction 1, box modes only); ``box_dice_volume`` (Dice of all the
        box masks stacked against the truth on those slices); ``miou_curve`` mean
        IoU after interactions 1..max_clicks; ``s_per_click`` and
        ``s_per_embedding`` (mean wall seconds).
    """
    n = len(cases)
    out: dict = {"n_cases": n}
    clicks_run = prompt != "box"
    for thr in NOC_THRESHOLDS:
        key = f"noc{round(thr * 100)}"
        out[key] = _mean([noc(c.ious, thr, max_clicks) for c in cases]) if clicks_run else None
    out["n_fail90"] = (
        sum(1 for c in cases if not any(v >= 0.90 for v in c.ious[:max_clicks]))
        if clicks_run
        else None
    )
    out["dice_at"] = {
        str(k): (_mean([carried(c.dices, k) for c in cases]) if clicks_run else None)
        for k in DICE_AT
    }
    if prompt.startswith("box"):
        out["box_dice"] = _mean([c.dices[0] for c in cases])
        out["box_iou"] = _mean([c.ious[0] for c in cases])
        inter = sum(c.first_intersection for c in cases)
        denom = sum(c.first_pred_area + c.area for c in cases)
        out["box_dice_volume"] = (2.0 * inter / denom) if denom else None
    else:
        out["box_dice"] = out["box_iou"] = out["box_dice_volume"] = None
    curve_len = max_clicks if clicks_run else 1
    out["miou_curve"] = (
        [float(np.mean([carried(c.ious, k) for c in cases])) for k in range(1, curve_len + 1)]
        if n
        else []
    )
    seconds = [s for c in cases for s in c.click_seconds]
    out["s_per_click"] = _mean(seconds)
    embeds = [c.embed_seconds for c in cases if c.embed_seconds > 0]
    out["s_per_embedding"] = _mean(embeds)
    return out
