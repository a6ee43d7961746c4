"""Typed, frozen data that crosses module and thread boundaries.

Numpy only: no torch, no Qt. Arrays are in napari order; every field names its
frame. ``yx`` is a slice's pixel frame (row, column) in the display array of
shape (Z, Y, X); ``model`` frames are SAM's (x, y) after resize-longest-side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SlicePrompt:
    """All prompts for one object on one slice, in the slice's pixel frame.

    Attributes
    ----------
    points_yx : np.ndarray
        (N, 2) float, (row, col) pixel coordinates on the slice. N may be 0.
    point_labels : np.ndarray
        (N,) int, 1 for a positive click, 0 for a negative click.
    box_yxyx : np.ndarray or None
        (4,) float, (y0, x0, y1, x1) inclusive pixel corners, or None.
    prev_logits_lowres : np.ndarray or None
        (256, 256) float32 low-resolution logits of this object's previous
        prediction on this slice, in the model frame (SAM's ``mask_input``),
        or None for a first interaction.
    """

    points_yx: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    box_yxyx: np.ndarray | None = None
    prev_logits_lowres: np.ndarray | None = None

    @property
    def is_empty(self) -> bool:
        return len(self.points_yx) == 0 and self.box_yxyx is None


@dataclass(frozen=True)
class SlicePrediction:
    """One slice's model output, owned by the caller (never a view of engine buffers).

    Attributes
    ----------
    mask_yx : np.ndarray
        (H, W) bool, the mask on the slice's pixel grid (logit > 0).
    logits_lowres : np.ndarray
        (256, 256) float32 low-resolution logits in the model frame; feed back
        as ``SlicePrompt.prev_logits_lowres``.
    score : float
        The model's predicted IoU for this mask.
    """

    mask_yx: np.ndarray
    logits_lowres: np.ndarray
    score: float


@dataclass(frozen=True)
class SliceMask:
    """A finished slice of one object, yielded by a task to the GUI thread.

    Which request it answers is the worker runner's business (it pairs job ids
    with results and drops stale ones), not the result's.

    Attributes
    ----------
    z : int
        Slice index along axis 0 of the display array.
    label : int
        The label id to paint.
    mask_yx : np.ndarray
        (Y, X) bool mask on slice ``z``.
    score : float
        Predicted IoU.
    logits_lowres : np.ndarray or None
        (256, 256) float32, kept so the next click can feed it back.
    """

    z: int
    label: int
    mask_yx: np.ndarray
    score: float
    logits_lowres: np.ndarray | None = None


@dataclass(frozen=True)
class Progress:
    """Progress of a long task, yielded between slices.

    Attributes
    ----------
    done : int
    total : int
    message : str
    """

    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class DirectionEnd:
    """Where and why one direction of a propagation ended, yielded once per direction.

    Attributes
    ----------
    label : int
    direction : str
        ``"up"`` (increasing z, "above") or ``"down"`` (decreasing z, "below").
    last_z : int or None
        The last slice this direction painted (None: it painted none).
    stop_z : int or None
        The slice where it stopped (predicted but not painted, or a locked
        slice); None when it ran to the edge of the volume.
    reason : str
        Why, e.g. ``"overlap 0.53 < 0.60"``, ``"score 0.74 < 0.85"``,
        ``"area 3 px < 5 px"``, ``"corrected slice"``, ``"end of the volume"``.
    """

    label: int
    direction: str
    last_z: int | None
    stop_z: int | None
    reason: str

    def describe(self) -> str:
        """One line for the status bar and the CLI: ``stopped above slice 24: overlap 0.53 < 0.60``."""
        side = "above" if self.direction == "up" else "below"
        if self.stop_z is None:
            return f"reached the {'last' if self.direction == 'up' else 'first'} slice ({self.reason})"
        return f"stopped {side} slice {self.stop_z}: {self.reason}"
