"""The prompt layers of the MedSAM widget (clicks, boxes) and their coordinates.

Everything here runs on the GUI thread. Prompts are read from napari layers
and converted to the image's data frame (z, y, x voxel indices) through world
coordinates, so layers with a different scale or translate still line up.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Points, Shapes

from napari_medsam.prompts.voxels import (
    box_on_slice,
    latest_box,
    map_points,
    slice_prompt,
    slices_of,
)
from napari_medsam.session.prompt_history import BOXES, CLICKS

CLICKS_NAME = CLICKS
BOXES_NAME = BOXES
POSITIVE_COLOR = "lime"
NEGATIVE_COLOR = "red"


def find_layer(viewer, name: str, kind: type):
    """The first layer called ``name`` of type ``kind``, or None."""
    for layer in viewer.layers:
        if layer.name == name and isinstance(layer, kind):
            return layer
    return None


def grid_kwargs(image: Image) -> dict:
    """Scale/translate/rotate/shear/affine and axis names of ``image``: new layers share its grid."""
    return {
        "scale": tuple(image.scale),
        "translate": tuple(image.translate),
        "rotate": np.asarray(image.rotate),
        "shear": np.asarray(image.shear),
        "affine": image.affine.affine_matrix,
        "axis_labels": tuple(image.axis_labels),
    }


def _match_grid(layer, image: Image) -> None:
    for key, value in grid_kwargs(image).items():
        setattr(layer, key, value)


def ensure_clicks_layer(viewer, image: Image) -> Points:
    """Find or create the ``clicks`` Points layer (feature ``positive`` colours the points)."""
    layer = find_layer(viewer, CLICKS_NAME, Points)
    if layer is None:
        layer = viewer.add_points(
            np.zeros((0, 3)),
            ndim=3,
            name=CLICKS_NAME,
            features={"positive": np.zeros(0, dtype=bool)},
            feature_defaults={"positive": True},
            face_color="positive",
            face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
            border_color="white",
            size=max(3.0, 0.015 * max(image.data.shape[1:]) * float(image.scale[-1])),
            **grid_kwargs(image),
        )
    else:
        _match_grid(layer, image)
    return layer


def ensure_boxes_layer(viewer, image: Image) -> Shapes:
    """Find or create the ``boxes`` Shapes layer (rectangles, yellow outline)."""
    layer = find_layer(viewer, BOXES_NAME, Shapes)
    if layer is None:
        layer = viewer.add_shapes(
            ndim=3,
            name=BOXES_NAME,
            edge_color="yellow",
            face_color="transparent",
            edge_width=max(1.0, 0.004 * max(image.data.shape[1:]) * float(image.scale[-1])),
            **grid_kwargs(image),
        )
    else:
        _match_grid(layer, image)
    return layer


def to_image_zyx(layer, coords: np.ndarray, image: Image) -> np.ndarray:
    """Convert ``coords`` from ``layer``'s data frame to ``image``'s data frame.

    Parameters
    ----------
    layer : napari layer
        The layer whose data frame ``coords`` is in.
    coords : np.ndarray
        (N, 3) coordinates in ``layer``'s data frame.
    image : Image
        The target image layer.

    Returns
    -------
    np.ndarray
        (N, 3) float (z, y, x) in the image's voxel (data) frame.
    """
    coords = np.atleast_2d(np.asarray(coords, dtype=float))
    return map_points(coords, lambda p: image.world_to_data(layer.data_to_world(p)))


def from_image_zyx(layer, coords_zyx: np.ndarray, image: Image) -> np.ndarray:
    """Convert ``coords_zyx`` from ``image``'s data frame to ``layer``'s (inverse of :func:`to_image_zyx`).

    Parameters
    ----------
    layer : napari layer
        The layer whose data frame the result is in.
    coords_zyx : np.ndarray
        (N, 3) float (z, y, x) in the image's voxel (data) frame.
    image : Image
        The image layer the coordinates refer to.

    Returns
    -------
    np.ndarray
        (N, 3) float coordinates in ``layer``'s data frame.
    """
    coords_zyx = np.atleast_2d(np.asarray(coords_zyx, dtype=float))
    return map_points(coords_zyx, lambda p: layer.world_to_data(image.data_to_world(p)))


def boxes_zyx(boxes: Shapes, image: Image) -> list[np.ndarray]:
    """Every box's (4, 3) corners in ``image``'s data frame, oldest first."""
    return [to_image_zyx(boxes, corners, image) for corners in boxes.data]


def prompt_slices(layer, indices, image: Image) -> set[int]:
    """Image slice indices of the points / shapes ``indices`` of a prompt layer."""
    rows = [to_image_zyx(layer, layer.data[index], image) for index in indices]
    if isinstance(layer, Points):
        return slices_of(points_zyx=rows)
    return slices_of(boxes_corners_zyx=rows, shape_zyx=image.data.shape)


def clicks_on_slice(clicks: Points, image: Image, z: int) -> tuple[np.ndarray, np.ndarray]:
    """Clicks lying on slice ``z`` of ``image``: (N, 2) float32 (row, col), (N,) labels 1 / 0."""
    prompt = build_slice_prompt(clicks, None, image, z)
    return prompt.points_yx, prompt.point_labels


def box_zyx(boxes: Shapes, index: int, image: Image) -> tuple[int, np.ndarray] | None:
    """Slice index and (y0, x0, y1, x1) box of shape ``index``, clipped to the slice.

    Returns None when the shape lies outside the volume.
    """
    return box_on_slice(to_image_zyx(boxes, boxes.data[index], image), image.data.shape)


def latest_box_on_slice(boxes: Shapes, image: Image, z: int) -> np.ndarray | None:
    """The most recently drawn box on slice ``z`` as (y0, x0, y1, x1), or None."""
    return latest_box(boxes_zyx(boxes, image), image.data.shape, z)


def build_slice_prompt(clicks: Points | None, boxes: Shapes | None, image: Image, z: int):
    """All clicks and the latest box of the current object on slice ``z`` (a SlicePrompt)."""
    has_clicks = clicks is not None and len(clicks.data) > 0
    points_zyx = to_image_zyx(clicks, clicks.data, image) if has_clicks else None
    positive = clicks.features["positive"] if has_clicks else None
    corners = boxes_zyx(boxes, image) if boxes is not None else []
    return slice_prompt(points_zyx, positive, corners, image.data.shape, z)
