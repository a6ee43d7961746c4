"""Write display-frame label volumes as NIfTI on their source image's grid.

Inverts the reader's reorientation exactly (flips and transposes only) and writes with
the source affine and a copy of the source header. Import from
:mod:`napari_medsam.io.nifti`, which re-exports these functions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_medsam.io.atomic import atomic_path
from napari_medsam.io.errors import NiftiError, is_nifti_path
from napari_medsam.io.orientation import (
    file_to_display_ornt,
    inverse_ornt,
    reorient,
    transformed_shape,
)

__all__ = ["file_order_labels", "metadata_for_display_grid", "save_labels_nifti"]

logger = logging.getLogger(__name__)


def metadata_for_display_grid(
    shape_zyx: Sequence[int],
    spacing_zyx_mm: Sequence[float],
    origin_ras: Sequence[float] = (0.0, 0.0, 0.0),
    source_path: str | None = None,
) -> dict[str, Any]:
    """Layer metadata for an array made in display orientation (no source file).

    The implied file stores the array as (x, y, z) with a diagonal LPS-style affine
    ``diag(-sx, -sy, sz)``, so a written file reopens aligned with the display.

    Parameters
    ----------
    shape_zyx : 3 ints
        Display array shape.
    spacing_zyx_mm : 3 floats
        Voxel size along (z, y, x), mm.
    origin_ras : 3 floats
        RAS+ position (mm) of display voxel (0, 0, 0).
    source_path : str or None
        Stored as ``source_path``.
    """
    if len(shape_zyx) != 3 or len(spacing_zyx_mm) != 3:
        raise NiftiError(f"need a 3D grid, got shape {tuple(shape_zyx)}")
    sz, sy, sx = (float(s) for s in spacing_zyx_mm)
    if min(sz, sy, sx) <= 0:
        raise NiftiError(f"spacing must be positive, got {tuple(spacing_zyx_mm)}")
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = np.asarray(origin_ras, dtype=np.float64)
    file_shape = (int(shape_zyx[2]), int(shape_zyx[1]), int(shape_zyx[0]))
    header = nib.Nifti1Header()
    header.set_data_shape(file_shape)
    header.set_zooms((sx, sy, sz))
    header.set_xyzt_units("mm")
    header.set_qform(affine, code="scanner")
    header.set_sform(affine, code="scanner")
    ornt = file_to_display_ornt(affine)
    return {
        "affine_ras": affine,
        "header": header,
        "ornt": ornt,
        "file_shape": file_shape,
        "spacing_zyx_mm": (sz, sy, sx),
        "source_path": source_path,
        "oblique": False,
    }


def _label_dtype(labels: np.ndarray) -> np.dtype:
    if labels.size == 0:
        return np.dtype(np.uint8)
    lo, hi = int(labels.min()), int(labels.max())
    if lo >= 0 and hi <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if lo >= 0 and hi <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max:
        return np.dtype(np.int32)
    raise NiftiError(f"label values [{lo}, {hi}] do not fit in int32")


def file_order_labels(labels_zyx: np.ndarray, metadata: Mapping[str, Any]) -> np.ndarray:
    """Display-frame labels back in the source file's (i, j, k) order and label dtype.

    Parameters
    ----------
    labels_zyx : (Z, Y, X) integer or bool array
        Labels in display orientation.
    metadata : mapping
        Source grid (``affine_ras``, ``ornt``, ``file_shape``).

    Returns
    -------
    (I, J, K) array
        uint8, uint16 or int32 (the smallest that holds the labels), C-contiguous.

    Raises
    ------
    NiftiError
        Missing grid, shape mismatch, non-integer labels, values beyond int32.
    """
    missing = [k for k in ("affine_ras", "ornt", "file_shape") if k not in metadata]
    if missing:
        raise NiftiError(f"metadata has no source grid (missing {', '.join(missing)})")
    labels_zyx = np.asarray(labels_zyx)
    if labels_zyx.dtype.kind == "b":
        labels_zyx = labels_zyx.astype(np.uint8)
    if labels_zyx.dtype.kind not in "iu":
        raise NiftiError(f"labels must be integers, got dtype {labels_zyx.dtype}")
    ornt = np.asarray(metadata["ornt"], dtype=np.int64)
    file_shape = tuple(int(s) for s in metadata["file_shape"])
    expected = transformed_shape(file_shape, ornt)
    if labels_zyx.shape != expected:
        raise NiftiError(
            f"labels shape {labels_zyx.shape} does not match the source image grid "
            f"{expected} (z, y, x)"
        )
    dtype = _label_dtype(labels_zyx)
    return np.ascontiguousarray(reorient(labels_zyx, inverse_ornt(ornt)).astype(dtype, copy=False))


def save_labels_nifti(
    labels_zyx: np.ndarray, path: str | os.PathLike, metadata: Mapping[str, Any]
) -> Path:
    """Write a display-frame label volume on its source file's grid.

    Parameters
    ----------
    labels_zyx : (Z, Y, X) integer array
        Labels in display orientation (napari's array).
    path : str or PathLike
        Output ``.nii`` or ``.nii.gz``; compression follows the suffix; its folder must
        exist. Written through a temporary file and renamed, so a failure never leaves a
        half-written file.
    metadata : mapping
        Source grid, as from :meth:`NiftiVolume.layer_metadata` or
        :func:`metadata_for_display_grid`.

    Returns
    -------
    pathlib.Path
        The written file. Its affine, qform/sform codes and header fields are the
        source's; dtype is uint8, uint16 or int32 (smallest that holds the labels);
        ``scl_slope = 1``, ``scl_inter = 0``, intent ``label``.

    Raises
    ------
    NiftiError
        Missing source grid, shape mismatch, non-integer labels, bad suffix, write failure.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise NiftiError(f"{path.name}: labels can only be saved as .nii or .nii.gz")
    if not path.parent.is_dir():
        raise NiftiError(f"{path.parent}: no such folder (create it first)")
    data_file = file_order_labels(labels_zyx, metadata)
    dtype = data_file.dtype
    file_shape = data_file.shape

    affine = np.asarray(metadata["affine_ras"], dtype=np.float64)
    source_header = metadata.get("header")
    header = (
        nib.Nifti1Header.from_header(source_header)
        if source_header is not None
        else nib.Nifti1Header()
    )
    if source_header is None:
        header.set_qform(affine, code="scanner")
        header.set_sform(affine, code="scanner")
    header.set_data_shape(file_shape)
    header.set_data_dtype(dtype)
    header["cal_min"], header["cal_max"] = 0.0, 0.0
    header.set_intent("label")
    header["descrip"] = b"napari-medsam labels"
    img = nib.Nifti1Image(data_file, affine, header=header)
    # After construction: the constructor resets scaling to "unset" (NaN).
    img.header.set_slope_inter(1.0, 0.0)
    if not np.allclose(img.header.get_best_affine(), affine, atol=1e-6):
        # Header lost the affine (e.g. qform-only with shear); store it as the sform.
        img.header.set_sform(affine, code="aligned")

    # Same folder (so the rename is atomic); nibabel picks compression from the suffix.
    try:
        with atomic_path(path) as tmp:
            nib.save(img, tmp)
    except Exception as exc:
        raise NiftiError(f"{path.name}: could not write labels ({exc})") from exc
    logger.info("saved labels %s (%s, file shape %s)", path, dtype.name, file_shape)
    return path
