"""SimpleClick-style click maps in the model frame.

Numpy only. Models that take clicks as image channels (SimpleClick, Med-SA's
click branch) read three maps of the model's square input: disks around the
positive clicks, disks around the negative clicks and the previous mask.
"""

from __future__ import annotations

import numpy as np

from napari_medsam.prompts.geometry import RESIZE_LONGEST_SIDE, points_yx_to_model_xy


def click_maps(
    points_yx: np.ndarray,
    labels: np.ndarray,
    hw: tuple[int, int],
    side: int,
    prev_mask_model: np.ndarray | None = None,
    radius: float = 5,
    resize: str = RESIZE_LONGEST_SIDE,
) -> np.ndarray:
    """Rasterise clicks and the previous mask into three model-frame channels.

    Parameters
    ----------
    points_yx : np.ndarray
        (N, 2) clicks, (row, col) in the slice's pixel frame. N may be 0.
    labels : np.ndarray
        (N,) int, 1 positive, 0 negative.
    hw : tuple of int
        (H, W) of the slice.
    side : int
        Model input side; the maps are ``side`` x ``side`` and the slice occupies
        the top-left ``resized_shape(hw, side, resize)`` region.
    prev_mask_model : np.ndarray, optional
        (side, side) previous mask in the model frame (bool or 0/1; binarised with
        ``> 0.5``). None gives an empty channel.
    radius : float
        Disk radius in model pixels (after resizing), 5 as in SimpleClick.
    resize : str
        ``"longest_side"`` or ``"stretch"``, the model's input convention.

    Returns
    -------
    np.ndarray
        (3, side, side) float32 with values 0/1: channel 0 positive disks,
        1 negative disks, 2 the previous mask. A model pixel (row r, col c), whose
        centre is (c + 0.5, r + 0.5), lies in a disk when
        ``(c + 0.5 - x)**2 + (r + 0.5 - y)**2 <= radius**2`` for a click at model (x, y).
    """
    points_yx = np.asarray(points_yx, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(points_yx):
        raise ValueError(f"{len(points_yx)} points but {len(labels)} labels")
    maps = np.zeros((3, side, side), dtype=np.float32)
    if len(points_yx):
        # disk centres as model pixel indices (pixel c is centred at c + 0.5)
        coords_xy_model = points_yx_to_model_xy(points_yx, hw, side, resize) - 0.5
        rows = np.arange(side, dtype=np.float64)[:, None]
        cols = np.arange(side, dtype=np.float64)[None, :]
        r2 = float(radius) ** 2
        for (x, y), label in zip(coords_xy_model, labels, strict=True):
            # a bounding square keeps each disk O(radius^2) instead of O(side^2)
            r0, r1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)) + 1, side)
            c0, c1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)) + 1, side)
            if r0 >= r1 or c0 >= c1:
                continue
            disk = (cols[:, c0:c1] - x) ** 2 + (rows[r0:r1] - y) ** 2 <= r2
            channel = 0 if int(label) == 1 else 1
            maps[channel, r0:r1, c0:c1][disk] = 1.0
    if prev_mask_model is not None:
        prev = np.asarray(prev_mask_model)
        if prev.shape != (side, side):
            raise ValueError(f"prev_mask_model must be ({side}, {side}), got {prev.shape}")
        maps[2] = (prev.astype(np.float32) > 0.5).astype(np.float32)
    return maps
