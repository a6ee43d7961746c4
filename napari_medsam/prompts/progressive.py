"""Progressive merge of a corrective click (FocalClick's rule), in the low-res model frame.

A corrective click is meant to fix one error region: the false negative it lands
in (positive click) or the false positive (negative click). A decoder that
re-predicts the whole mask may also change pixels far from the click, and such
changes are where a later click makes the mask worse than an earlier one.
:func:`merge_click_region` keeps the previous prediction everywhere except the
connected region of change that holds the new click.

Everything here is numpy/scipy on the (S, S) low-resolution logits that SAM
decoders return and take back as ``mask_input`` (S = 256 for SAM and LiteMedSAM).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_medsam.prompts.geometry import RESIZE_LONGEST_SIDE, yx_to_model_xy

#: 8-connectivity for the changed regions
_EIGHT = np.ones((3, 3), bool)


def click_to_lowres_rc(
    click_yx: np.ndarray, hw: tuple[int, int], side: int, lowres_side: int, resize: str = RESIZE_LONGEST_SIDE
) -> tuple[int, int]:
    """The low-res pixel (row, col) under a click given on slice pixels.

    Parameters
    ----------
    click_yx : np.ndarray
        (2,) float, (row, col) of the click on the (H, W) slice (pixel index).
    hw : tuple of int
        (H, W) of the slice.
    side : int
        Model input side (the click's model frame).
    lowres_side : int
        Side S of the low-res logits.
    resize : str
        ``"longest_side"`` or ``"stretch"``.

    Returns
    -------
    tuple of int
        (row, col) in the (S, S) low-res frame, clipped into it.
    """
    x, y = yx_to_model_xy(np.asarray(click_yx, np.float64) + 0.5, hw, side, resize)
    scale = lowres_side / float(side)
    row = int(np.clip(np.floor(y * scale), 0, lowres_side - 1))
    col = int(np.clip(np.floor(x * scale), 0, lowres_side - 1))
    return row, col


def merge_click_region(
    prev_lowres: np.ndarray, new_lowres: np.ndarray, click_rc: tuple[int, int], positive: bool
) -> np.ndarray:
    """Keep ``prev_lowres`` except in the changed region that holds the click.

    Parameters
    ----------
    prev_lowres, new_lowres : np.ndarray
        (S, S) float logits of the previous and the new prediction (mask = logit > 0).
    click_rc : tuple of int
        (row, col) of the new click in the (S, S) frame (:func:`click_to_lowres_rc`).
    positive : bool
        True for a positive click (the region it fixes is one the new mask
        added), False for a negative one (a region the new mask removed).

    Returns
    -------
    np.ndarray
        (S, S) float32 merged logits. When the click's pixel did not change the
        way the click asks, the new prediction is returned whole: the rule then
        has no region to keep it to, and the click must still have an effect.
    """
    prev = np.asarray(prev_lowres, np.float32)
    new = np.asarray(new_lowres, np.float32)
    if prev.shape != new.shape or prev.ndim != 2:
        raise ValueError(f"logits must be two (S, S) arrays, got {prev.shape} and {new.shape}")
    prev_mask, new_mask = prev > 0, new > 0
    changed = (new_mask & ~prev_mask) if positive else (prev_mask & ~new_mask)
    row, col = click_rc
    if not changed[row, col]:
        return new.copy()
    regions, _ = ndimage.label(changed, structure=_EIGHT)
    keep = regions == regions[row, col]
    return np.where(keep, new, prev).astype(np.float32)
