"""Zoom-in crops (RITM's ZoomIn, FocalClick): crop <-> slice frame maps.

Numpy only. A crop is a box of the slice, ``crop_yxyx = (y0, x0, y1, x1)`` with
half-open integer bounds (rows ``y0 .. y1 - 1``). Inside the crop the model sees
the crop resized to its input, so a small object covers many more model pixels.

The crop of the next prediction is the bounding box of the current mask and the
clicks, expanded about its centre by a factor, made square with a minimum side,
and shifted to lie inside the slice. It is kept while the object stays inside.
"""

from __future__ import annotations

import numpy as np

#: expansion of the object's box (RITM uses 1.4, FocalClick up to 2)
ZOOM_EXPAND = 1.6
#: smallest crop side, slice pixels
ZOOM_MIN_SIDE = 48
#: no zoom when the crop would cover this fraction of the slice's shorter side. Held out
#: (v5, 36 cases, cap 20): 0.75 zoomed large tumours too and cost them (STS CT NoC@85 3.7 ->
#: 7.3); 0.4 leaves them on the whole slice and keeps the gain on small objects
ZOOM_MAX_FRACTION = 0.4
#: zoom-in on by default (app, CLI, evaluation): held out, against off, NoC@85 10.28 ->
#: 10.06, box + 3 clicks IoU 0.729 -> 0.741, cases worse at click 5 than 1 3 -> 1, NoC@90
#: 13.53 -> 13.64, Dice@5 0.853 -> 0.849 (model card)
ZOOM_IN_BY_DEFAULT = True


def region_yxyx(mask_yx: np.ndarray | None, points_yx: np.ndarray) -> np.ndarray | None:
    """Inclusive (y0, x0, y1, x1) box of a mask's pixels and the clicks, or None."""
    parts = []
    if mask_yx is not None and mask_yx.any():
        rows = np.flatnonzero(mask_yx.any(axis=1))
        cols = np.flatnonzero(mask_yx.any(axis=0))
        parts.append([rows[0], cols[0], rows[-1], cols[-1]])
    pts = np.asarray(points_yx, np.float64).reshape(-1, 2)
    if len(pts):
        parts.append([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
    if not parts:
        return None
    arr = np.asarray(parts, np.float64)
    return np.array([arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max()])


def lowres_region_yxyx(
    mask_lowres: np.ndarray, points_yx: np.ndarray, hw: tuple[int, int]
) -> np.ndarray | None:
    """As :func:`region_yxyx` for an (S, S) low-res mask stretched over an (H, W) slice.

    Each low-res pixel's whole footprint on the slice counts, so the region holds the
    upsampled mask; it costs nothing like upsampling the mask first (which, at 512 x 512,
    took longer than the decoder).
    """
    region = region_yxyx(mask_lowres, np.zeros((0, 2)))
    if region is not None:
        side_y, side_x = mask_lowres.shape
        sy, sx = hw[0] / side_y, hw[1] / side_x
        region = np.array([np.floor(region[0] * sy), np.floor(region[1] * sx),
                           np.ceil((region[2] + 1) * sy) - 1, np.ceil((region[3] + 1) * sx) - 1])
        region = np.minimum(region, [hw[0] - 1, hw[1] - 1, hw[0] - 1, hw[1] - 1])
    return region_yxyx(None, points_yx) if region is None else _with_points(region, points_yx)


def _with_points(region: np.ndarray, points_yx: np.ndarray) -> np.ndarray:
    pts = region_yxyx(None, points_yx)
    if pts is None:
        return region
    return np.concatenate([np.minimum(region[:2], pts[:2]), np.maximum(region[2:], pts[2:])])


def crop_around(
    region: np.ndarray,
    hw: tuple[int, int],
    expand: float = ZOOM_EXPAND,
    min_side: int = ZOOM_MIN_SIDE,
) -> np.ndarray:
    """Square crop (half-open (y0, x0, y1, x1) ints) around an inclusive region.

    The side is ``max(expand * longest side of the region, min_side)``, at most the
    slice's shorter side; the crop is shifted (not shrunk) to lie inside the slice.
    """
    h, w = int(hw[0]), int(hw[1])
    y0, x0, y1, x1 = (float(v) for v in region)
    cy, cx = (y0 + y1 + 1) / 2.0, (x0 + x1 + 1) / 2.0
    side = max(expand * max(y1 - y0 + 1, x1 - x0 + 1), float(min_side))
    side = int(np.ceil(min(side, h, w)))
    top = int(np.clip(round(cy - side / 2.0), 0, h - side))
    left = int(np.clip(round(cx - side / 2.0), 0, w - side))
    return np.array([top, left, top + side, left + side], np.int64)


def worth_zooming(crop_yxyx: np.ndarray, hw: tuple[int, int]) -> bool:
    """Whether a crop is small enough, against the slice, to gain resolution."""
    side = max(crop_yxyx[2] - crop_yxyx[0], crop_yxyx[3] - crop_yxyx[1])
    return side < ZOOM_MAX_FRACTION * min(hw)


def contains(crop_yxyx: np.ndarray, region: np.ndarray, margin: float = 2.0) -> bool:
    """Whether an inclusive region lies inside a crop, ``margin`` pixels from its edges."""
    y0, x0, y1, x1 = crop_yxyx
    return bool(
        region[0] >= y0 + margin
        and region[1] >= x0 + margin
        and region[2] <= y1 - 1 - margin
        and region[3] <= x1 - 1 - margin
    )


def touches_inner_edge(mask_hw: np.ndarray, crop_yxyx: np.ndarray, hw: tuple[int, int]) -> bool:
    """Whether an (h, w) crop mask reaches a crop edge that is not the slice's own edge."""
    y0, x0, y1, x1 = (int(v) for v in crop_yxyx)
    edges = [(y0 > 0, mask_hw[0, :]), (y1 < hw[0], mask_hw[-1, :]),
             (x0 > 0, mask_hw[:, 0]), (x1 < hw[1], mask_hw[:, -1])]  # fmt: skip
    return any(inner and bool(line.any()) for inner, line in edges)


def keep_or_new_crop(
    previous: np.ndarray | None, region: np.ndarray, hw: tuple[int, int]
) -> np.ndarray:
    """The previous crop while the region stays inside it and it is not much too big.

    A previous crop more than twice the side a fresh crop would have is replaced
    (the object shrank), as is one the region left.
    """
    fresh = crop_around(region, hw)
    if previous is None:
        return fresh
    prev_side = previous[2] - previous[0]
    if contains(previous, region) and prev_side <= 2 * (fresh[2] - fresh[0]):
        return previous
    return fresh


def points_to_crop(points_yx: np.ndarray, crop_yxyx: np.ndarray) -> np.ndarray:
    """(N, 2) slice (row, col) -> crop (row, col)."""
    pts = np.asarray(points_yx, np.float32).reshape(-1, 2)
    return pts - np.asarray(crop_yxyx[:2], np.float32)[None]


def points_from_crop(points_yx: np.ndarray, crop_yxyx: np.ndarray) -> np.ndarray:
    """(N, 2) crop (row, col) -> slice (row, col); inverse of :func:`points_to_crop`."""
    pts = np.asarray(points_yx, np.float32).reshape(-1, 2)
    return pts + np.asarray(crop_yxyx[:2], np.float32)[None]


def box_to_crop(box_yxyx: np.ndarray | None, crop_yxyx: np.ndarray) -> np.ndarray | None:
    """Inclusive slice box -> inclusive crop box, clipped to the crop; None stays None."""
    if box_yxyx is None:
        return None
    h, w = crop_yxyx[2] - crop_yxyx[0], crop_yxyx[3] - crop_yxyx[1]
    box = np.asarray(box_yxyx, np.float32) - np.tile(np.asarray(crop_yxyx[:2], np.float32), 2)
    return np.clip(box, 0, [h - 1, w - 1, h - 1, w - 1]).astype(np.float32)


def paste_crop(
    crop_values: np.ndarray, crop_yxyx: np.ndarray, hw: tuple[int, int], fill
) -> np.ndarray:
    """A (h, w) crop array placed on an (H, W) slice array.

    ``fill`` (a scalar, or an (H, W) array such as the whole slice's own prediction)
    gives the values outside the crop; it is not modified.
    """
    out = np.array(np.broadcast_to(fill, tuple(int(v) for v in hw)), dtype=crop_values.dtype)
    y0, x0, y1, x1 = (int(v) for v in crop_yxyx)
    out[y0:y1, x0:x1] = crop_values
    return out
