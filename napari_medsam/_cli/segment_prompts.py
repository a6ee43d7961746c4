"""The ``segment`` command's prompts: file voxels and display voxels grouped by display slice.

Also reads the ``--negatives-from`` label file. Every check raises a one-line
ValueError naming the option and the frame (file i, j, k or display z, y, x).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np


def _check_inside(
    ijk: tuple[int, ...], file_shape: tuple[int, ...], what: str, frame: str = "file"
) -> None:
    for axis, (v, n) in enumerate(zip(ijk, file_shape, strict=True)):
        if not 0 <= v < n:
            raise ValueError(
                f"{what} {','.join(map(str, ijk))} lies outside the volume: index {v} on "
                f"{frame} axis {axis} must be in [0, {n - 1}] ({frame} shape {tuple(file_shape)})"
            )


def slice_prompts(args: argparse.Namespace, metadata: dict):
    """Group the command-line prompts by display slice.

    Returns
    -------
    dict
        z -> {"points_yx": list, "labels": list, "boxes_yxyx": list}, all in the
        display (z, y, x) frame of :func:`napari_medsam.io.nifti.load_nifti`.
    """
    from napari_medsam.io.orientation import file_ijk_to_zyx, slice_axis_of_file

    file_shape = tuple(int(s) for s in metadata["file_shape"])
    k_axis = slice_axis_of_file(metadata)
    in_plane = [a for a in range(3) if a != k_axis]
    per_slice: dict[int, dict[str, list]] = defaultdict(
        lambda: {"points_yx": [], "labels": [], "boxes_yxyx": []}
    )
    for clicks, label, flag in ((args.point, 1, "--point"), (args.neg_point, 0, "--neg-point")):
        for ijk in clicks:
            _check_inside(ijk, file_shape, flag)
            z, y, x = (int(v) for v in file_ijk_to_zyx(np.array(ijk), metadata))
            per_slice[z]["points_yx"].append((y, x))
            per_slice[z]["labels"].append(label)
    for i0, j0, i1, j1, k in args.box:
        if i0 == i1 or j0 == j1:
            raise ValueError(
                f"--box {i0},{j0},{i1},{j1},{k} has zero size (its corners share a row or a "
                "column): give two opposite corners of the object's box"
            )
        corners_zyx = []
        for a, b in ((i0, j0), (i1, j1)):
            ijk = [0, 0, 0]
            ijk[in_plane[0]], ijk[in_plane[1]], ijk[k_axis] = a, b, k
            _check_inside(tuple(ijk), file_shape, "--box corner")
            corners_zyx.append(file_ijk_to_zyx(np.array(ijk), metadata))
        (z, y0, x0), (_, y1, x1) = corners_zyx
        per_slice[int(z)]["boxes_yxyx"].append((min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1)))
    _display_prompts(args, metadata, per_slice)
    return dict(per_slice)


def _display_prompts(args: argparse.Namespace, metadata: dict, per_slice) -> None:
    """Add ``--box-zyx`` / ``--point-zyx`` / ``--neg-point-zyx`` (display voxels) to ``per_slice``."""
    from napari_medsam.io.orientation import transformed_shape

    shape_zyx = transformed_shape(
        tuple(int(s) for s in metadata["file_shape"]), np.asarray(metadata["ornt"])
    )
    clicks = (
        (getattr(args, "point_zyx", []), 1, "--point-zyx"),
        (getattr(args, "neg_point_zyx", []), 0, "--neg-point-zyx"),
    )
    for points, label, flag in clicks:
        for zyx in points:
            _check_inside(zyx, shape_zyx, flag, frame="display")
            per_slice[zyx[0]]["points_yx"].append((zyx[1], zyx[2]))
            per_slice[zyx[0]]["labels"].append(label)
    for z, y0, x0, y1, x1 in getattr(args, "box_zyx", []):
        for corner in ((z, y0, x0), (z, y1, x1)):
            _check_inside(corner, shape_zyx, "--box-zyx corner", frame="display")
        per_slice[z]["boxes_yxyx"].append((min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1)))



def load_negative_labels(path: Path, volume) -> np.ndarray:
    """Read a label file for ``--negatives-from``: (Z, Y, X) integers on the scan's display grid.

    Raises
    ------
    ValueError
        The file is not on the scan's grid (shape or affine) or holds non-integer values.
    """
    from napari_medsam.io.volumes import load_volume

    labels = load_volume(path)
    if tuple(labels.file_shape) != tuple(volume.file_shape):
        raise ValueError(
            f"--negatives-from {path.name}: not on the scan's grid (file shape "
            f"{tuple(labels.file_shape)}, the scan's {tuple(volume.file_shape)})"
        )
    if not np.allclose(labels.affine_ras, volume.affine_ras, atol=1e-3):
        raise ValueError(f"--negatives-from {path.name}: not on the scan's grid (another affine)")
    data = np.asarray(labels.data_zyx)
    if not np.issubdtype(data.dtype, np.integer):
        if not np.array_equal(data, np.round(data)):
            raise ValueError(f"--negatives-from {path.name}: label values must be integers")
        data = data.astype(np.int64)
    return data
