"""Negative clicks from objects already segmented: "that is another object, not this one".

Numpy / scipy only. Given a slice of the labels, the label being segmented and
its prompt, every connected component of another label that lies in the
prompt's region (the box, or around the positive clicks when there is no box)
gives one negative click at its interior: the pixel of the component, inside
the region, farthest from the component's boundary (distance-transform
maximum). The components with the largest part in the region come first and
only ``max_points`` are kept, so a crowded slice adds a few clicks, not dozens.

Used by :func:`napari_medsam.tasks.segment.segment_slice` and
:func:`napari_medsam.tasks.propagate.propagate` when the user asks for it.

Measured: off by default
------------------------
Bundled LiteMedSAM on CPU, ``totalseg_ct_full`` (window 40/400), a box from the
truth + 2 px on every slice of spleen, right and left kidney (30, 35 and 33
slices), negatives from all other truth labels on the slice. Mean 2D Dice:

=====================  ======  ========  ========  =====
prompt                 spleen  kidney R  kidney L  mean
=====================  ======  ========  ========  =====
box + 2 px             0.952   0.905     0.899     0.919
+ negatives (3, 10 px) 0.728   0.895     0.900     0.841
+ negatives (1, 10 px) 0.921   0.905     0.900     0.909
+ negatives (3, 40 px) 0.941   0.904     0.899     0.915
=====================  ======  ========  ========  =====

Propagation from the largest slice (3D Dice, stop overlap 0.6) drops from
0.952 / 0.904 / 0.908 to 0.406 / 0.741 / 0.766. The clicks are where they
should be (the masks keep out of them; a click outside the box changes
little); LiteMedSAM's decoder was trained on boxes only and shrinks the mask
for any click: even one positive click at the spleen's interior added to its
box lowers Dice from 0.94 to 0.73 (10 slices). So the option is off by default
and meant for click-trained models (SAM, Med-SA), not measured here.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt, find_objects
from scipy.ndimage import label as connected_components

from napari_medsam.types import SlicePrompt

#: At most this many negative clicks are added to one prompt.
DEFAULT_MAX_NEGATIVES = 3
#: A component needs at least this many pixels inside the region (fewer: a speck or a sliver).
DEFAULT_MIN_PIXELS = 10
#: Without a box, components within this many pixels (per axis) of a positive click count.
DEFAULT_NEAR_PX = 24


def prompt_region_yx(
    prompt: SlicePrompt, shape_yx: tuple[int, int], near_px: int = DEFAULT_NEAR_PX
) -> np.ndarray:
    """Pixels of a slice where other objects would compete with the prompted one.

    Parameters
    ----------
    prompt : SlicePrompt
        The prompt in the slice's (row, col) pixel frame.
    shape_yx : tuple of int
        (H, W) of the slice.
    near_px : int
        Without a box: half side of the square around each positive click.

    Returns
    -------
    np.ndarray
        (H, W) bool: the box's pixels (inclusive corners, clipped to the slice)
        when the prompt has a box, else the squares of side ``2 * near_px + 1``
        centred on the positive clicks; all False with neither.
    """
    h, w = int(shape_yx[0]), int(shape_yx[1])
    region = np.zeros((h, w), bool)
    if prompt.box_yxyx is not None:
        y0, x0, y1, x1 = np.round(np.asarray(prompt.box_yxyx, np.float64)).astype(int)
        y0, y1 = sorted((y0, y1))
        x0, x1 = sorted((x0, x1))
        region[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = True
        return region
    labels = np.asarray(prompt.point_labels).reshape(-1)
    positive = np.asarray(prompt.points_yx, np.float64).reshape(-1, 2)[labels == 1]
    for y, x in np.round(positive).astype(int):
        rows = slice(max(y - near_px, 0), max(y + near_px + 1, 0))
        cols = slice(max(x - near_px, 0), max(x + near_px + 1, 0))
        region[rows, cols] = True
    return region


def negative_points_yx(
    labels_yx: np.ndarray,
    label: int,
    region_yx: np.ndarray,
    max_points: int = DEFAULT_MAX_NEGATIVES,
    min_pixels: int = DEFAULT_MIN_PIXELS,
) -> np.ndarray:
    """One interior point per other object's component inside a region.

    Parameters
    ----------
    labels_yx : np.ndarray
        (H, W) integer labels of one slice; 0 is background.
    label : int
        The object being segmented: its pixels never give a point.
    region_yx : np.ndarray
        (H, W) bool, where to look (see :func:`prompt_region_yx`).
    max_points : int
        Keep the components with the most pixels in the region, at most this many.
    min_pixels : int
        Ignore components with fewer pixels than this in the region.

    Returns
    -------
    np.ndarray
        (N, 2) float32 (row, col) pixel coordinates, N <= ``max_points``, largest
        overlap first (ties: smaller label id, then raster order). Each point lies
        in the region, on the component's pixel farthest from its boundary (the
        slice border counts as boundary).
    """
    labels_yx = np.asarray(labels_yx)
    region = np.asarray(region_yx, bool)
    if labels_yx.ndim != 2 or region.shape != labels_yx.shape:
        raise ValueError(
            f"expected (H, W) labels and region of the same shape, got "
            f"{labels_yx.shape} and {region.shape}"
        )
    found: list[tuple[int, int, int, int, int]] = []  # (-overlap, value, y, x, order)
    if max_points > 0:
        values = np.unique(labels_yx[region])
        for value in values[(values != 0) & (values != label)]:
            components, _ = connected_components(labels_yx == value)
            for index, box in enumerate(find_objects(components), start=1):
                point = _interior_in_region(components, index, box, region, min_pixels)
                if point is not None:
                    overlap, y, x = point
                    found.append((-overlap, int(value), y, x, len(found)))
    found.sort()
    points = [(y, x) for _, _, y, x, _ in found[:max_points]]
    return np.array(points, np.float32).reshape(-1, 2)


def _interior_in_region(components, index, box, region, min_pixels):
    """(overlap, row, col) of component ``index`` inside ``region``, or None if too small."""
    if box is None:
        return None
    component = components[box] == index
    inside = component & region[box]
    overlap = int(np.count_nonzero(inside))
    if overlap < max(min_pixels, 1):
        return None
    # the crop holds the whole component, so a zero pad makes its edge (and the slice's) boundary
    depth = distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(np.where(inside, depth, -1.0))), depth.shape)
    return overlap, int(y + box[0].start), int(x + box[1].start)


def with_negatives_from_labels(
    prompt: SlicePrompt,
    labels_yx: np.ndarray,
    label: int,
    max_points: int = DEFAULT_MAX_NEGATIVES,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    near_px: int = DEFAULT_NEAR_PX,
) -> SlicePrompt:
    """The prompt with negative clicks added inside the other objects it reaches.

    Parameters
    ----------
    prompt : SlicePrompt
        The user's (or propagation's) prompt on one slice, (row, col) frame.
    labels_yx : np.ndarray
        (H, W) integer labels of that slice: a copy, never a live layer.
    label : int
        The object being segmented.
    max_points, min_pixels
        See :func:`negative_points_yx`.
    near_px
        See :func:`prompt_region_yx`.

    Returns
    -------
    SlicePrompt
        A new prompt: the original clicks, then the added ones with label 0;
        box and previous logits unchanged. The same prompt when nothing is added.
    """
    labels_yx = np.asarray(labels_yx)
    region = prompt_region_yx(prompt, labels_yx.shape[-2:], near_px)
    extra = negative_points_yx(labels_yx, label, region, max_points, min_pixels)
    if len(extra) == 0:
        return prompt
    points = np.asarray(prompt.points_yx, np.float32).reshape(-1, 2)
    point_labels = np.asarray(prompt.point_labels, np.int64).reshape(-1)
    return SlicePrompt(
        points_yx=np.concatenate([points, extra]),
        point_labels=np.concatenate([point_labels, np.zeros(len(extra), np.int64)]),
        box_yxyx=prompt.box_yxyx,
        prev_logits_lowres=prompt.prev_logits_lowres,
    )
