"""The 3D protocol's simulated user: where the next click goes and the box it comes with.

Numpy / scipy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_medsam.prompts.geometry import box_from_mask


def next_click_3d(
    pred_zyx: np.ndarray,
    gt_zyx: np.ndarray,
    spacing_zyx_mm: Sequence[float] | None = None,
    clicked_zyx: np.ndarray | None = None,
) -> tuple[int, int, int, bool] | None:
    """Centre of the largest connected 3D error component.

    Parameters
    ----------
    pred_zyx, gt_zyx : np.ndarray
        (Z, Y, X) bool prediction and truth.
    spacing_zyx_mm : sequence of float, optional
        Voxel size for the distance transform (isotropic when None).
    clicked_zyx : np.ndarray, optional
        (Z, Y, X) bool, voxels clicked before: never clicked again (as the 2D
        RITM clicker), so an error the model did not fix gets a new position.

    Returns
    -------
    tuple or None
        (z, y, x, is_positive) of the voxel farthest from the component's
        boundary (first in raster order on ties); None when there is no error.
    """
    error = pred_zyx ^ gt_zyx
    if clicked_zyx is not None:
        error &= ~clicked_zyx
    if not error.any():
        return None
    components, n = ndimage.label(error)
    sizes = np.bincount(components.ravel(), minlength=n + 1)
    sizes[0] = 0
    biggest = int(np.argmax(sizes))
    box = ndimage.find_objects((components == biggest).astype(np.int8))[0]
    region = np.pad(components[box] == biggest, 1)
    dt = ndimage.distance_transform_edt(region, sampling=spacing_zyx_mm)[1:-1, 1:-1, 1:-1]
    dz, dy, dx = np.unravel_index(int(np.argmax(dt)), dt.shape)
    z, y, x = dz + box[0].start, dy + box[1].start, dx + box[2].start
    return int(z), int(y), int(x), bool(gt_zyx[z, y, x])


def correction_box(pred_zyx: np.ndarray, z: int, z_start: int, positive_yx: np.ndarray):
    """Box for re-segmenting slice ``z`` after a click.

    The box of the current mask on ``z`` or, where ``z`` is empty (propagation
    stopped short of it), of the nearest non-empty slice towards ``z_start``;
    enlarged to contain the positive clicks. None when there is nothing to box.

    Returns
    -------
    np.ndarray or None
        (4,) float32 (y0, x0, y1, x1).
    """
    box = box_from_mask(pred_zyx[z])
    if box is None and z != z_start:
        step = -1 if z > z_start else 1
        for zz in range(z + step, z_start + step, step):  # towards the box slice, inclusive
            box = box_from_mask(pred_zyx[zz])
            if box is not None:
                break
    pos = np.asarray(positive_yx, np.float32).reshape(-1, 2)
    if len(pos):
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        if box is None:
            box = np.array([lo[0], lo[1], hi[0], hi[1]], np.float32)
        else:
            box = np.array(
                [min(box[0], lo[0]), min(box[1], lo[1]), max(box[2], hi[0]), max(box[3], hi[1])],
                np.float32,
            )
    return box
