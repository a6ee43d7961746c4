"""One slice and its prompt, as the tensors a SAM-style model takes.

The app's engines and the fine-tuning forward pass both convert prompts here,
so a trained model sees exactly what it will see in the app.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from napari_medsam.prompts.geometry import (
    RESIZE_LONGEST_SIDE,
    box_yxyx_to_model_xyxy,
    points_yx_to_model_xy,
)
from napari_medsam.types import SlicePrompt

__all__ = ["PromptTensors", "as_slice_yx", "prompt_tensors"]


class PromptTensors(NamedTuple):
    """SAM prompt-encoder inputs for one case.

    Attributes
    ----------
    points : tuple of torch.Tensor or None
        ((1, N, 2) float32 (x, y) model pixels, (1, N) int64 labels 1/0), or None.
    boxes : torch.Tensor or None
        (1, 4) float32 (x0, y0, x1, y1) model pixels, or None.
    masks : torch.Tensor or None
        (1, 1, L, L) float32 previous low-res logits (SAM's ``mask_input``), or None.
    multimask : bool
        A single click alone: ask for SAM's three masks and keep the best-scored.
    """

    points: tuple[torch.Tensor, torch.Tensor] | None
    boxes: torch.Tensor | None
    masks: torch.Tensor | None
    multimask: bool


def as_slice_yx(image_yx: np.ndarray) -> np.ndarray:
    """A slice as a (H, W) float32 array; ValueError for any other number of axes."""
    image = np.asarray(image_yx, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) slice, got shape {image.shape}")
    return image


def prompt_tensors(
    prompt: SlicePrompt,
    hw: tuple[int, int],
    side: int,
    device: torch.device | str,
    resize: str = RESIZE_LONGEST_SIDE,
    lowres_side: int | None = None,
    multimask_single_click: bool = True,
) -> PromptTensors:
    """Convert one slice's prompt to prompt-encoder tensors on ``device``.

    Parameters
    ----------
    prompt : SlicePrompt
        Points (N, 2) (row, col) with N labels, box (y0, x0, y1, x1) inclusive pixel
        corners, previous low-res logits, all in the slice's pixel frame.
    hw : (int, int)
        The slice's (H, W).
    side : int
        The model's square input side.
    device : torch.device or str
    resize : str
        How the slice is resized to the input (``prompts.geometry`` modes).
    lowres_side : int, optional
        Expected side of ``prev_logits_lowres``; checked when given.
    multimask_single_click : bool
        Whether a single click alone uses the three-mask output
        (``InputSpec.multimask_single_click``).

    Raises
    ------
    ValueError
        An empty prompt, points and labels of different lengths, or previous
        logits of the wrong shape.
    """
    points = boxes = masks = None
    n_points = len(prompt.points_yx)
    if n_points:
        labels = np.asarray(prompt.point_labels).reshape(-1)
        if len(labels) != n_points:
            raise ValueError(f"{n_points} points but {len(labels)} labels")
        coords_xy_model = points_yx_to_model_xy(prompt.points_yx, hw, side, resize)
        points = (
            torch.as_tensor(coords_xy_model, dtype=torch.float32, device=device)[None],
            torch.as_tensor(labels.astype(np.int64), device=device)[None],
        )
    if prompt.box_yxyx is not None:
        box_xyxy_model = box_yxyx_to_model_xyxy(prompt.box_yxyx, hw, side, resize)
        boxes = torch.as_tensor(box_xyxy_model, dtype=torch.float32, device=device)[None]
    if prompt.prev_logits_lowres is not None:
        prev = np.asarray(prompt.prev_logits_lowres, dtype=np.float32)
        if lowres_side is not None and prev.shape != (lowres_side, lowres_side):
            raise ValueError(
                f"prev_logits_lowres must be ({lowres_side}, {lowres_side}), got {prev.shape}"
            )
        masks = torch.as_tensor(prev, device=device)[None, None]
    if points is None and boxes is None and masks is None:
        raise ValueError("empty prompt: give at least one click or a box")
    multimask = multimask_single_click and n_points == 1 and boxes is None and masks is None
    return PromptTensors(points, boxes, masks, multimask)
