"""The RITM / SimpleClick click simulator.

Given the ground truth and the current prediction of one object on one slice,
the next click goes to the error pixel farthest from the error boundary:

- the false-negative (FN) and false-positive (FP) regions are each padded by a
  one-pixel zero border before the Euclidean distance transform, so the image
  border counts as boundary (as RITM's ``_get_next_click`` does);
- pixels that were already clicked get distance 0 and are never chosen again;
- the click is positive when the FN maximum is at least the FP maximum;
- ties between equally distant pixels go to the first in raster (row-major)
  order, so the simulation is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt


@dataclass(frozen=True)
class Click:
    """One simulated click on a slice.

    Attributes
    ----------
    y, x : int
        Pixel (row, column) on the slice.
    is_positive : bool
        True for a foreground click, False for a background click.
    """

    y: int
    x: int
    is_positive: bool


def _padded_edt(region_yx: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest non-region pixel or the image border.

    Parameters
    ----------
    region_yx : np.ndarray
        (H, W) bool.

    Returns
    -------
    np.ndarray
        (H, W) float64 Euclidean distances; 0 outside the region.
    """
    if not region_yx.any():
        return np.zeros(region_yx.shape, np.float64)
    padded = np.pad(region_yx, 1, mode="constant", constant_values=False)
    return distance_transform_edt(padded)[1:-1, 1:-1]


def next_click(
    gt_yx: np.ndarray, pred_yx: np.ndarray, not_clicked_yx: np.ndarray | None = None
) -> Click | None:
    """Place the next simulated click (RITM protocol).

    Parameters
    ----------
    gt_yx : np.ndarray
        (H, W) bool ground truth of the object.
    pred_yx : np.ndarray
        (H, W) bool current prediction (logit > 0).
    not_clicked_yx : np.ndarray, optional
        (H, W) bool, False where a click was already placed.

    Returns
    -------
    Click or None
        None when no error pixel is left to click (prediction equals the truth
        on every unclicked pixel).
    """
    gt = np.asarray(gt_yx, bool)
    pred = np.asarray(pred_yx, bool)
    if gt.shape != pred.shape:
        raise ValueError(f"gt shape {gt.shape} != prediction shape {pred.shape}")
    fn_dt = _padded_edt(gt & ~pred)
    fp_dt = _padded_edt(~gt & pred)
    if not_clicked_yx is not None:
        fn_dt = fn_dt * not_clicked_yx
        fp_dt = fp_dt * not_clicked_yx
    fn_max = float(fn_dt.max())
    fp_max = float(fp_dt.max())
    if fn_max == 0.0 and fp_max == 0.0:
        return None
    is_positive = fn_max >= fp_max
    dt, best = (fn_dt, fn_max) if is_positive else (fp_dt, fp_max)
    # argmax over the flattened array returns the first maximum in raster order
    flat_index = int(np.argmax(dt == best))
    y, x = np.unravel_index(flat_index, dt.shape)
    return Click(int(y), int(x), is_positive)


class Clicker:
    """Simulated user for one object on one slice: remembers its clicks.

    Parameters
    ----------
    gt_yx : np.ndarray
        (H, W) bool ground truth of the object.
    """

    def __init__(self, gt_yx: np.ndarray) -> None:
        self.gt_yx = np.asarray(gt_yx, bool)
        self._not_clicked = np.ones(self.gt_yx.shape, bool)
        self.clicks: list[Click] = []

    def make_next_click(self, pred_yx: np.ndarray) -> Click | None:
        """Add and return the next click for the prediction ``pred_yx`` ((H, W) bool).

        Returns None (and adds nothing) when no unclicked error pixel remains.
        """
        click = next_click(self.gt_yx, pred_yx, self._not_clicked)
        if click is not None:
            self._not_clicked[click.y, click.x] = False
            self.clicks.append(click)
        return click

    @property
    def points_yx(self) -> np.ndarray:
        """(N, 2) float32 (row, col) of all clicks so far."""
        if not self.clicks:
            return np.zeros((0, 2), np.float32)
        return np.array([(c.y, c.x) for c in self.clicks], np.float32)

    @property
    def point_labels(self) -> np.ndarray:
        """(N,) int64, 1 for positive and 0 for negative clicks."""
        return np.array([1 if c.is_positive else 0 for c in self.clicks], np.int64)
