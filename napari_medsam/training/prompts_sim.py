"""Training prompts as SimpleClick / RITM simulate them.

A case starts from random clicks (positive inside the object, negative in a band
around it or anywhere in the background), or from the eval clicker's own first
click, or from a jittered box. Iterative clicks then go to the error region of
the model's own previous prediction, chosen by the eval's RITM clicker
(:func:`napari_medsam.evaluation.clicker.next_click`), and that prediction's
low-res logits are fed back as the previous mask -- exactly what
``napari-medsam eval`` and the app do between clicks.

Numpy only; the model calls live in :mod:`napari_medsam.training.forward`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import binary_dilation, distance_transform_edt

from napari_medsam.evaluation.clicker import next_click
from napari_medsam.prompts.geometry import (
    RESIZE_LONGEST_SIDE,
    box_from_mask,
    lowres_logits_to_slice,
)
from napari_medsam.training.config import PromptSimConfig
from napari_medsam.types import SlicePrompt


@dataclass
class PromptState:
    """The simulated user's prompt on one case, grown click by click.

    Attributes
    ----------
    gt_yx : np.ndarray
        (H, W) bool truth.
    points_yx : list of (int, int)
        Clicks (row, col) on the slice.
    labels : list of int
        1 positive, 0 negative.
    box_yxyx : np.ndarray or None
        (4,) float32 (y0, x0, y1, x1) inclusive pixel box.
    prev_logits_lowres : np.ndarray or None
        (L, L) float32 logits of the previous prediction.
    takes_clicks : bool
        False for a box-only case (no iterative clicks).
    kind : str
        "clicks", "protocol", "box" or "box+clicks" (for statistics).
    """

    gt_yx: np.ndarray
    points_yx: list[tuple[int, int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box_yxyx: np.ndarray | None = None
    prev_logits_lowres: np.ndarray | None = None
    takes_clicks: bool = True
    kind: str = "clicks"
    not_clicked: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.gt_yx = np.asarray(self.gt_yx, bool)
        if self.not_clicked is None:
            self.not_clicked = np.ones(self.gt_yx.shape, bool)

    def add_click(self, y: int, x: int, positive: bool) -> None:
        self.points_yx.append((int(y), int(x)))
        self.labels.append(1 if positive else 0)
        self.not_clicked[int(y), int(x)] = False

    def slice_prompt(self) -> SlicePrompt:
        """The app's :class:`~napari_medsam.types.SlicePrompt` for this state."""
        points = np.asarray(self.points_yx, np.float32).reshape(-1, 2)
        return SlicePrompt(
            points_yx=points,
            point_labels=np.asarray(self.labels, np.int64),
            box_yxyx=self.box_yxyx,
            prev_logits_lowres=self.prev_logits_lowres,
        )


def _pick(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct (row, col) pixels of ``mask``, uniformly."""
    coords = np.argwhere(mask)
    if len(coords) == 0 or n <= 0:
        return np.zeros((0, 2), np.int64)
    return coords[rng.choice(len(coords), size=min(n, len(coords)), replace=False)]


def sample_positive(gt_yx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) positive clicks inside the object, away from its edge when it allows.

    Pixels deeper than a quarter of the object's largest inner distance are used
    (RITM samples an eroded mask), the whole object when it is thin.
    """
    gt = np.asarray(gt_yx, bool)
    dist = distance_transform_edt(np.pad(gt, 1))[1:-1, 1:-1]
    inner = dist >= max(1.0, 0.25 * float(dist.max()))
    return _pick(inner if inner.any() else gt, n, rng)


def sample_negative(
    gt_yx: np.ndarray, n: int, rng: np.random.Generator, far_probability: float = 0.3
) -> np.ndarray:
    """(n, 2) negative clicks: in a band around the object, or anywhere outside it.

    The band is the object dilated by ~15% of its equivalent diameter (at least
    3 px) minus the object: where a user corrects a leak.
    """
    gt = np.asarray(gt_yx, bool)
    out = []
    width = max(3, int(round(0.15 * 2.0 * np.sqrt(gt.sum() / np.pi))))
    band = binary_dilation(gt, iterations=width) & ~gt
    for _ in range(n):
        region = ~gt if (rng.random() < far_probability or not band.any()) else band
        picked = _pick(region, 1, rng)
        if len(picked):
            out.append(picked[0])
    return np.asarray(out, np.int64).reshape(-1, 2)


def jitter_box(gt_yx: np.ndarray, rng: np.random.Generator, jitter: float = 0.1) -> np.ndarray:
    """The object's tight box with each edge moved by up to ``jitter`` x its side.

    Returns
    -------
    np.ndarray
        (4,) float32 (y0, x0, y1, x1), inclusive pixels, inside the slice.
    """
    box = box_from_mask(gt_yx)
    if box is None:
        raise ValueError("cannot box an empty object")
    h, w = np.asarray(gt_yx).shape
    y0, x0, y1, x1 = (float(v) for v in box)
    dy, dx = jitter * (y1 - y0 + 1), jitter * (x1 - x0 + 1)
    shift = rng.uniform(-1.0, 1.0, size=4) * np.array([dy, dx, dy, dx])
    y0, x0, y1, x1 = np.rint(np.array([y0, x0, y1, x1]) + shift)
    y0, y1 = np.clip(sorted((y0, y1)), 0, h - 1)
    x0, x1 = np.clip(sorted((x0, x1)), 0, w - 1)
    return np.array([y0, x0, y1, x1], np.float32)


def initial_prompt(
    gt_yx: np.ndarray, rng: np.random.Generator, cfg: PromptSimConfig
) -> PromptState:
    """The first prompt of a training case (see the module docstring)."""
    state = PromptState(gt_yx)
    if rng.random() < cfg.box_fraction:
        state.box_yxyx = jitter_box(state.gt_yx, rng, cfg.box_jitter)
        state.takes_clicks = bool(rng.random() < cfg.box_with_clicks)
        state.kind = "box+clicks" if state.takes_clicks else "box"
        return state
    if rng.random() < cfg.protocol_first_click:
        click = next_click(state.gt_yx, np.zeros_like(state.gt_yx), state.not_clicked)
        state.add_click(click.y, click.x, click.is_positive)
        state.kind = "protocol"
        return state
    n_pos = int(rng.integers(1, max(1, cfg.max_init_positive) + 1))
    n_neg = int(rng.integers(0, max(0, cfg.max_init_negative) + 1))
    for y, x in sample_positive(state.gt_yx, n_pos, rng):
        state.add_click(y, x, True)
    for y, x in sample_negative(state.gt_yx, n_neg, rng, cfg.far_negative):
        state.add_click(y, x, False)
    return state


def add_error_click(
    state: PromptState, logits_lowres: np.ndarray, side: int, resize: str = RESIZE_LONGEST_SIDE
) -> bool:
    """Feed back a prediction: the next RITM click at its error, its logits as previous mask.

    Parameters
    ----------
    state : PromptState
    logits_lowres : np.ndarray
        (L, L) float32 low-res logits of the model's prediction for ``state``.
    side : int
        Model input side (the slice mask is ``lowres_logits_to_slice(...) > 0``,
        as the app's engine makes it).

    Returns
    -------
    bool
        Whether a click was added (False when no unclicked error pixel is left).
    """
    logits = np.asarray(logits_lowres, np.float32)
    pred = lowres_logits_to_slice(logits, state.gt_yx.shape, side, resize) > 0
    state.prev_logits_lowres = logits.copy()
    click = next_click(state.gt_yx, pred, state.not_clicked)
    if click is None:
        return False
    state.add_click(click.y, click.x, click.is_positive)
    return True
