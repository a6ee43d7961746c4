"""Clicks and boxes in a volume's voxel frame: affine maps, slices, clipping. numpy only.

The napari face reads prompt layers and hands their coordinates here, already in the
image's data frame (z, y, x voxel indices, float) or with the map to it
(:func:`map_points`); what lies on which slice, and where a box is clipped, is decided
here, the same way for every caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from napari_medsam.types import SlicePrompt


def map_points(coords: np.ndarray, convert: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply the affine map ``convert`` (one point a call) to (N, D) ``coords``.

    Beyond D + 1 points the map is read off D + 1 probes (the origin and the unit
    vectors) and applied to all points at once, so the cost of converting (e.g. every
    click on a layer) does not grow with the number of points.
    """
    n, d = coords.shape
    if n <= d + 1:
        out = np.empty_like(coords)
        for i, point in enumerate(coords):
            out[i] = convert(point)
        return out
    offset = np.asarray(convert(np.zeros(d)), dtype=float)
    matrix = np.stack([np.asarray(convert(e), dtype=float) - offset for e in np.eye(d)], axis=1)
    return coords @ matrix.T + offset


def inside_volume(zyx: np.ndarray, shape_zyx: tuple[int, ...]) -> bool:
    """Whether a (3,) voxel coordinate rounds to a voxel of a volume of ``shape_zyx``."""
    idx = np.round(np.asarray(zyx, dtype=float))
    return bool(np.all(idx >= 0) and np.all(idx < np.asarray(shape_zyx[:3])))


def points_on_slice(
    points_zyx: np.ndarray, positive: np.ndarray, shape_zyx: tuple[int, ...], z: int
) -> tuple[np.ndarray, np.ndarray]:
    """The clicks that lie on slice ``z`` (those rounding to a voxel outside are dropped).

    Parameters
    ----------
    points_zyx : np.ndarray
        (N, 3) float clicks in the volume's voxel frame.
    positive : np.ndarray
        (N,) bool, True for a positive click.
    shape_zyx : tuple of int
        The volume's shape.
    z : int

    Returns
    -------
    points_yx : np.ndarray
        (M, 2) float32 (row, col) in the slice's pixel frame.
    point_labels : np.ndarray
        (M,) int64, 1 positive, 0 negative.
    """
    points_zyx = np.asarray(points_zyx, float).reshape(-1, 3)
    idx = np.round(points_zyx)
    inside = np.all((idx >= 0) & (idx < np.asarray(shape_zyx[:3])), axis=1)
    keep = (idx[:, 0] == z) & inside
    labels = np.asarray(positive, dtype=bool).reshape(-1)[keep].astype(np.int64)
    return points_zyx[keep][:, 1:].astype(np.float32), labels


def box_on_slice(
    corners_zyx: np.ndarray, shape_zyx: tuple[int, ...]
) -> tuple[int, np.ndarray] | None:
    """Slice index and (y0, x0, y1, x1) box of a shape's corners, clipped to the slice.

    Parameters
    ----------
    corners_zyx : np.ndarray
        (V, 3) float vertices in the volume's voxel frame; the slice is their mean z, rounded.
    shape_zyx : tuple of int

    Returns
    -------
    (int, np.ndarray) or None
        ``z`` and the float32 box with inclusive corners; None when the shape lies
        outside the volume.
    """
    zyx = np.asarray(corners_zyx, float).reshape(-1, 3)
    z = int(np.round(zyx[:, 0].mean()))
    n_z, n_y, n_x = shape_zyx[:3]
    y0, x0 = zyx[:, 1].min(), zyx[:, 2].min()
    y1, x1 = zyx[:, 1].max(), zyx[:, 2].max()
    if not 0 <= z < n_z or y1 < 0 or x1 < 0 or y0 > n_y - 1 or x0 > n_x - 1:
        return None
    box = np.array([max(y0, 0), max(x0, 0), min(y1, n_y - 1), min(x1, n_x - 1)], dtype=np.float32)
    return z, box


def latest_box(
    boxes_corners_zyx: Sequence[np.ndarray], shape_zyx: tuple[int, ...], z: int
) -> np.ndarray | None:
    """The most recently drawn box on slice ``z`` as (y0, x0, y1, x1), or None.

    Parameters
    ----------
    boxes_corners_zyx : sequence of np.ndarray
        Each (4, 3) float corners of one box in the volume's voxel frame, oldest first.
    shape_zyx : tuple of int
        The volume's shape.
    z : int
    """
    for corners_zyx in reversed(list(boxes_corners_zyx)):
        found = box_on_slice(corners_zyx, shape_zyx)
        if found is not None and found[0] == z:
            return found[1]
    return None


def slice_prompt(
    points_zyx: np.ndarray | None,
    positive: np.ndarray | None,
    boxes_corners_zyx: Sequence[np.ndarray],
    shape_zyx: tuple[int, ...],
    z: int,
) -> SlicePrompt:
    """All clicks and the latest box on slice ``z``, as the prompt of that slice.

    Parameters
    ----------
    points_zyx : np.ndarray or None
        (N, 3) float clicks in the volume's voxel frame (None: no clicks layer).
    positive : np.ndarray or None
        (N,) bool, True for a positive click.
    boxes_corners_zyx : sequence of np.ndarray
        Each (4, 3) float box corners, oldest first (see :func:`latest_box`).
    shape_zyx : tuple of int
    z : int
    """
    if points_zyx is None or len(points_zyx) == 0:
        points_yx, point_labels = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    else:
        points_yx, point_labels = points_on_slice(points_zyx, positive, shape_zyx, z)
    box = latest_box(boxes_corners_zyx, shape_zyx, z)
    return SlicePrompt(points_yx=points_yx, point_labels=point_labels, box_yxyx=box)


def slices_of(
    points_zyx: Sequence[np.ndarray] = (),
    boxes_corners_zyx: Sequence[np.ndarray] = (),
    shape_zyx: tuple[int, ...] = (),
) -> set[int]:
    """The slice indices of clicks (rounded z) and boxes (those inside the volume)."""
    zs = {int(np.round(np.asarray(p, float).reshape(-1)[0])) for p in points_zyx}
    for corners_zyx in boxes_corners_zyx:
        found = box_on_slice(corners_zyx, shape_zyx)
        if found is not None:
            zs.add(found[0])
    return zs
