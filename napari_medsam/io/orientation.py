"""Voxel-axis bookkeeping between a NIfTI file's array and napari's display array.

Two index frames appear here:

* **file ijk**: indices of the file's own array, as ``nibabel`` ``img.dataobj[i, j, k]``
  uses them. The file's affine maps them to RAS+ world millimetres.
* **display zyx**: indices of the array shown in napari. Axis 0 (z) runs inferior ->
  superior, axis 1 (y) anterior -> posterior (row 0 is anterior) and axis 2 (x) patient
  right -> patient left (column 0 is the patient's right: the radiological convention of
  ITK-SNAP and 3D Slicer axial views).

An orientation transform ``ornt`` is nibabel's ``(3, 2)`` array: row ``i`` says that file
axis ``i`` becomes display axis ``ornt[i, 0]``, flipped when ``ornt[i, 1] == -1``.
Only flips and axis permutations are used, so every mapping is exact and invertible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

#: nibabel axis codes of the display array (z, y, x): towards Superior, Posterior, Left.
DISPLAY_AXCODES: tuple[str, str, str] = ("S", "P", "L")
_DISPLAY_ORNT = axcodes2ornt(DISPLAY_AXCODES)

#: Largest deviation of a unit direction cosine from 0 or +-1 that still counts as
#: axis-aligned.
OBLIQUE_TOLERANCE = 1e-3


#: Names of the display axes (z, y, x) for napari: the planes each slider walks
#: through in the display frame (z -> S, y -> P, x -> L).
AXIS_LABELS_ZYX = ("axial", "coronal", "sagittal")


def direction_cosines(affine_ras: np.ndarray) -> np.ndarray:
    """Unit column vectors of the affine's 3x3 part.

    Parameters
    ----------
    affine_ras : (4, 4) array
        Voxel (file ijk) -> RAS+ world (mm) affine.

    Returns
    -------
    (3, 3) float64 array
        Column ``i`` is the RAS+ direction of file axis ``i``.
    """
    rzs = np.asarray(affine_ras, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(rzs, axis=0)
    norms[norms == 0] = 1.0
    return rzs / norms


def is_oblique(affine_ras: np.ndarray, tol: float = OBLIQUE_TOLERANCE) -> bool:
    """Whether the affine's direction cosines are not a signed permutation.

    Parameters
    ----------
    affine_ras : (4, 4) array
        Voxel -> RAS+ world affine.
    tol : float
        Allowed deviation of each cosine from 0 or +-1.
    """
    cosines = np.abs(direction_cosines(affine_ras))
    near_one = np.abs(cosines - 1.0) <= tol
    near_zero = cosines <= tol
    if not np.all(near_one | near_zero):
        return True
    return not (np.all(near_one.sum(axis=0) == 1) and np.all(near_one.sum(axis=1) == 1))


def file_to_display_ornt(affine_ras: np.ndarray) -> np.ndarray:
    """Orientation transform taking the file array to the display (z, y, x) array.

    For an oblique affine the closest voxel axes are used.

    Parameters
    ----------
    affine_ras : (4, 4) array
        Voxel -> RAS+ world affine.

    Returns
    -------
    (3, 2) int64 array
        nibabel orientation transform, file -> display.
    """
    start = io_orientation(np.asarray(affine_ras, dtype=np.float64))
    if np.isnan(start).any():
        raise ValueError("affine has a degenerate (zero or collinear) voxel axis")
    return ornt_transform(start, _DISPLAY_ORNT).astype(np.int64)


def inverse_ornt(ornt: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Inverse of an orientation transform (display -> file when given file -> display).

    Parameters
    ----------
    ornt : (3, 2) array-like
        Orientation transform.

    Returns
    -------
    (3, 2) int64 array
    """
    ornt = np.asarray(ornt, dtype=np.int64)
    inv = np.empty_like(ornt)
    for axis_in, (axis_out, flip) in enumerate(ornt):
        inv[axis_out] = (axis_in, flip)
    return inv


def transformed_shape(shape: Sequence[int], ornt: np.ndarray) -> tuple[int, ...]:
    """Shape of an array of ``shape`` after :func:`reorient` with ``ornt``."""
    ornt = np.asarray(ornt, dtype=np.int64)
    out = [0] * len(ornt)
    for axis_in, (axis_out, _flip) in enumerate(ornt):
        out[axis_out] = int(shape[axis_in])
    return tuple(out)


def reorient(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Apply an orientation transform and return a C-contiguous array (same dtype).

    Parameters
    ----------
    array : (A, B, C) array
    ornt : (3, 2) array-like
        Orientation transform (input axes -> output axes).
    """
    return np.ascontiguousarray(apply_orientation(array, np.asarray(ornt)))


def display_spacing(affine_ras: np.ndarray, ornt: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the display axes (z, y, x).

    The sizes are the norms of the affine's columns (what the affine really maps), so an
    sform that disagrees with pixdim still displays at its true scale.
    """
    zooms = np.linalg.norm(np.asarray(affine_ras, dtype=np.float64)[:3, :3], axis=0)
    out = [0.0, 0.0, 0.0]
    for axis_in, (axis_out, _flip) in enumerate(np.asarray(ornt, dtype=np.int64)):
        out[axis_out] = float(zooms[axis_in])
    return (out[0], out[1], out[2])


def _grid(metadata: Mapping[str, Any]) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        ornt = np.asarray(metadata["ornt"], dtype=np.int64)
        file_shape = tuple(int(s) for s in metadata["file_shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("metadata has no source grid ('ornt' and 'file_shape')") from exc
    if ornt.shape != (3, 2) or len(file_shape) != 3:
        raise ValueError(f"bad source grid: ornt {ornt.shape}, file_shape {file_shape}")
    return ornt, file_shape


def file_ijk_to_zyx(ijk: Any, metadata: Mapping[str, Any]) -> np.ndarray:
    """Map file voxel indices to display indices.

    Parameters
    ----------
    ijk : (..., 3) array-like
        Indices in the file's array (integer or continuous voxel coordinates).
    metadata : mapping
        Layer metadata with ``ornt`` (file -> display) and ``file_shape``.

    Returns
    -------
    (..., 3) array
        Display (z, y, x) indices; integer input stays integer.
    """
    ornt, file_shape = _grid(metadata)
    ijk = np.asarray(ijk)
    out = np.empty(ijk.shape, dtype=np.result_type(ijk.dtype, np.int64))
    for axis_in, (axis_out, flip) in enumerate(ornt):
        v = ijk[..., axis_in]
        out[..., axis_out] = v if flip == 1 else file_shape[axis_in] - 1 - v
    return out


def zyx_to_file_ijk(zyx: Any, metadata: Mapping[str, Any]) -> np.ndarray:
    """Map display (z, y, x) indices to file voxel indices; inverse of :func:`file_ijk_to_zyx`.

    Parameters
    ----------
    zyx : (..., 3) array-like
        Display indices.
    metadata : mapping
        Layer metadata with ``ornt`` (file -> display) and ``file_shape``.

    Returns
    -------
    (..., 3) array
        File (i, j, k) indices.
    """
    ornt, file_shape = _grid(metadata)
    zyx = np.asarray(zyx)
    out = np.empty(zyx.shape, dtype=np.result_type(zyx.dtype, np.int64))
    for axis_in, (axis_out, flip) in enumerate(ornt):
        v = zyx[..., axis_out]
        out[..., axis_in] = v if flip == 1 else file_shape[axis_in] - 1 - v
    return out


def slice_axis_of_file(metadata: Mapping[str, Any]) -> int:
    """Index of the file axis shown as display axis 0 (the slice axis, closest to S-I)."""
    ornt, _ = _grid(metadata)
    return int(np.flatnonzero(ornt[:, 0] == 0)[0])
