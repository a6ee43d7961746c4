"""Prompts of a propagation step, built from the previous slice's mask.

Numpy / scipy only. The next slice's prompt is the previous mask's box (widened
by a margin), optionally a positive click at its interior and optionally the
mask itself as SAM's dense ``mask_input`` (:func:`mask_prompt_logits`): either
the previous prediction's own low-res logits, or a binary mask brought into the
model frame (:func:`napari_medsam.prompts.geometry.slice_mask_to_lowres_logits`),
as a hand-corrected slice has no logits.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.ndimage import distance_transform_edt

from napari_medsam.prompts.geometry import box_from_mask, slice_mask_to_lowres_logits
from napari_medsam.types import SlicePrompt

logger = logging.getLogger(__name__)

#: How the previous slice's mask reaches the model as SAM's ``mask_input``:
#: ``"none"`` (box only), ``"logits"`` (the previous prediction's low-res logits; a
#: seed or corrected slice is converted from its binary mask) or ``"binary"``
#: (always the converted binary mask).
MASK_PROMPTS = ("none", "logits", "binary")
#: Pixels added on each side of the previous slice's box (measured on totalseg_ct_full:
#: 0 px 0.700 (masks shrink), 2 px 0.901, 4 px 0.842 (masks grow)).
DEFAULT_BOX_MARGIN = 2
#: Add a positive click at the previous mask's interior (off: clicks hurt LiteMedSAM).
DEFAULT_USE_POINT = False


def mask_prompt_frame(engine) -> tuple[int, int, str] | None:
    """(side, lowres_side, resize) of an engine that takes a dense mask input, else None.

    Engines built on SAM's prompt encoder (:class:`~napari_medsam.model.engine.SamEngine`,
    Med-SA) expose ``image_size``, ``lowres_side`` and ``spec.resize``; an engine
    without them (e.g. a numpy fake) cannot take a mask, and propagation falls back
    to box-only prompts.
    """
    side = getattr(engine, "image_size", None)
    lowres = getattr(engine, "lowres_side", None)
    resize = getattr(getattr(engine, "spec", None), "resize", None)
    if not (side and lowres and resize):
        return None
    return int(side), int(lowres), str(resize)


#: Measured mask prompt per engine name (``benchmarks/sweep_propagation.py``), for
#: engines that do not declare ``propagation_mask_prompt`` themselves. The bundled
#: LiteMedSAM is not listed: box only is its best (``logits`` helps its thick scans
#: but halves its 3 mm organs' Dice; see :mod:`napari_medsam.tasks.stop_rules`).
MEASURED_MASK_PROMPTS: dict[str, str] = {}


def default_mask_prompt(engine) -> str:
    """The engine's own choice (attribute ``propagation_mask_prompt``), else the
    measured one for its name (:data:`MEASURED_MASK_PROMPTS`), else ``"none"``.

    A checkpoint trained on adjacent-slice pairs with the previous mask as its
    dense prompt declares ``"logits"`` or ``"binary"``.
    """
    mode = getattr(engine, "propagation_mask_prompt", None)
    if mode is None:
        mode = MEASURED_MASK_PROMPTS.get(str(getattr(engine, "name", "")), "none")
    return mode if mode in MASK_PROMPTS else "none"


def mask_prompt_logits(
    mode: str, frame, prev_mask_yx: np.ndarray, prev_logits_lowres: np.ndarray | None
) -> np.ndarray | None:
    """The ``prev_logits_lowres`` of the next slice's prompt under ``mode``.

    Parameters
    ----------
    mode : {"none", "logits", "binary"}
    frame : tuple or None
        :func:`mask_prompt_frame` of the engine (None: a binary mask cannot be
        converted, so only the previous prediction's logits are passed on).
    prev_mask_yx : np.ndarray
        (Y, X) bool previous mask.
    prev_logits_lowres : np.ndarray or None
        (L, L) logits of the previous prediction (None for a seed or corrected slice).

    Returns
    -------
    np.ndarray or None
        (L, L) float32, or None for a box-only prompt.
    """
    if mode not in MASK_PROMPTS:
        raise ValueError(f"mask_prompt must be one of {MASK_PROMPTS}, got {mode!r}")
    if mode == "none":
        return None
    if mode == "logits" and prev_logits_lowres is not None:
        # the engine's own output: already in its frame
        return np.asarray(prev_logits_lowres, np.float32)
    if frame is None:
        return None
    side, lowres, resize = frame
    return slice_mask_to_lowres_logits(prev_mask_yx, side, lowres, resize)


def interior_point_yx(mask_yx: np.ndarray) -> np.ndarray | None:
    """The pixel of a mask farthest from its boundary (distance-transform maximum).

    The image border counts as boundary. Ties go to the first pixel in raster order.

    Parameters
    ----------
    mask_yx : np.ndarray
        (H, W) bool mask.

    Returns
    -------
    np.ndarray or None
        (2,) float32 (row, col), or None for an empty mask.
    """
    mask = np.asarray(mask_yx, bool)
    if not mask.any():
        return None
    dt = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return np.array([y, x], np.float32)


def mask_iou(a_yx: np.ndarray, b_yx: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 0.0 when both are empty."""
    union = np.count_nonzero(a_yx | b_yx)
    return float(np.count_nonzero(a_yx & b_yx)) / union if union else 0.0


def prompt_from_mask(
    prev_mask_yx: np.ndarray,
    prev_logits_lowres: np.ndarray | None = None,
    box_margin: int = DEFAULT_BOX_MARGIN,
    use_point: bool = DEFAULT_USE_POINT,
) -> SlicePrompt:
    """Prompt for the next slice from the previous slice's mask.

    Parameters
    ----------
    prev_mask_yx : np.ndarray
        (H, W) bool, non-empty mask of the object on the neighbouring slice.
    prev_logits_lowres : np.ndarray, optional
        (256, 256) float32 low-res logits of that mask (model frame), passed on
        as ``prev_logits_lowres``; None leaves the model without a mask input.
    box_margin : int
        Pixels added on each side of the mask's box, clipped to the slice.
    use_point : bool
        Add one positive click at :func:`interior_point_yx`.

    Returns
    -------
    SlicePrompt
        In the slice's (row, col) pixel frame.
    """
    box = box_from_mask(prev_mask_yx)
    if box is None:
        raise ValueError("cannot prompt from an empty mask")
    h, w = prev_mask_yx.shape
    m = float(box_margin)
    box = np.array(
        [
            max(box[0] - m, 0.0),
            max(box[1] - m, 0.0),
            min(box[2] + m, h - 1.0),
            min(box[3] + m, w - 1.0),
        ],
        np.float32,
    )
    if use_point:
        points = interior_point_yx(prev_mask_yx).reshape(1, 2)
        labels = np.ones(1, np.int64)
    else:
        points, labels = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    logits = None if prev_logits_lowres is None else np.asarray(prev_logits_lowres, np.float32)
    return SlicePrompt(
        points_yx=points, point_labels=labels, box_yxyx=box, prev_logits_lowres=logits
    )
