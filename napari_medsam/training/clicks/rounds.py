"""Interactive rounds on a batch of cases: prompts as tensors, predictions fed back.

Model frame throughout: the record's 256 x 256 grid is the model input grid, so a
click on record pixel (row r, col c) is the model point (c + 0.5, r + 0.5), and a
box over inclusive pixels (y0, x0, y1, x1) has the edges (x0, y0, x1 + 1, y1 + 1),
as :mod:`napari_medsam.prompts.geometry` maps the app's prompts.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from napari_medsam.training.clicks.sampler import Case

#: magnitude of the logits a mask prompt is turned into
MASK_LOGIT = 10.0


def mask_logits(mask: np.ndarray) -> np.ndarray:
    """(S, S) bool -> (S, S) float32 logits in [-10, 10], soft at the edge."""
    soft = gaussian_filter(mask.astype(np.float32), sigma=1.0)
    return (2.0 * MASK_LOGIT * (soft - 0.5)).astype(np.float32)


def point_tensors(cases: list[Case], jitter: np.random.Generator | None = None):
    """((B, N, 2) float model (x, y), (B, N) int64 labels, -1 padding) or None."""
    n = max(len(c.points_yx) for c in cases)
    if n == 0:
        return None
    coords = np.zeros((len(cases), n, 2), np.float32)
    labels = np.full((len(cases), n), -1, np.int64)
    for i, case in enumerate(cases):
        for j, ((y, x), lab) in enumerate(zip(case.points_yx, case.labels, strict=True)):
            coords[i, j] = (x + 0.5, y + 0.5)
            labels[i, j] = lab
    if jitter is not None:
        coords += jitter.uniform(-0.5, 0.5, coords.shape).astype(np.float32)
    return torch.from_numpy(coords), torch.from_numpy(labels)


def box_tensor(cases: list[Case]) -> torch.Tensor | None:
    """(B, 4) float (x0, y0, x1, y1) pixel edges, or None when the cases have no box."""
    if cases[0].box_yxyx is None:
        return None
    boxes = np.stack([c.box_yxyx for c in cases]).astype(np.float32)
    return torch.from_numpy(boxes[:, [1, 0, 3, 2]] + np.array([0, 0, 1, 1], np.float32))


def prev_tensor(cases: list[Case]) -> torch.Tensor | None:
    """(B, 1, S, S) logits of the cases' mask prompts, or None when they have none."""
    if cases[0].prev_mask is None:
        return None
    return torch.from_numpy(np.stack([mask_logits(c.prev_mask) for c in cases]))[:, None]


def targets(cases: list[Case]) -> torch.Tensor:
    """(B, 1, S, S) float 0/1 truth."""
    return torch.from_numpy(np.stack([c.gt for c in cases]).astype(np.float32))[:, None]


def feed_back(cases: list[Case], logits: torch.Tensor) -> None:
    """Add the next RITM click of each case at its prediction's error."""
    preds = (logits[:, 0] > 0).cpu().numpy()
    for case, pred in zip(cases, preds, strict=True):
        case.click_at_error(pred)


def iou_of(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B,) IoU of logits > 0 against 0/1 truth."""
    pred = logits > 0
    truth = gt > 0.5
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
