"""The one painting rule: how a new mask of one object enters the labels volume.

On the painted slice the object's voxels become exactly the mask, except where
the mask meets another object: voxels of a locked label are never written, and
by default no other label is (``overwrite_unlocked=True`` lets the new mask take
voxels from unlocked labels). The change is returned as flat indices and the
old values, which is what :class:`napari_medsam.session.undo.UndoStack` stores.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np


class LockedLabelError(ValueError):
    """Raised when painting a label that is locked."""


def flat_slice_offset(shape_zyx: tuple[int, ...], z: int) -> int:
    """C-order flat index of voxel (z, 0, 0) in a volume of shape (Z, Y, X)."""
    return int(z) * int(np.prod(shape_zyx[1:]))


def paint_mask(
    labels_zyx: np.ndarray,
    z: int,
    mask_yx: np.ndarray,
    label: int,
    locked_ids: Collection[int] = frozenset(),
    overwrite_unlocked: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace object ``label`` on slice ``z`` by ``mask_yx``, in place.

    Parameters
    ----------
    labels_zyx : np.ndarray
        (Z, Y, X) integer labels, modified in place.
    z : int
        Slice index along axis 0.
    mask_yx : np.ndarray
        (Y, X) bool, the object's new extent on slice ``z`` (empty erases it there).
    label : int
        The object's id (>= 1).
    locked_ids : collection of int
        Labels whose voxels are never overwritten.
    overwrite_unlocked : bool
        Let the mask take voxels of other, unlocked labels (default: only
        background and the object's own voxels are written).

    Returns
    -------
    changed_index : np.ndarray
        (N,) int64 C-order flat indices into ``labels_zyx`` of the voxels that changed.
    old_values : np.ndarray
        (N,) their previous values, in ``labels_zyx``'s dtype. The new values are
        ``labels_zyx.flat[changed_index]``.

    Raises
    ------
    LockedLabelError
        If ``label`` itself is locked.
    """
    label = int(label)
    if label < 1:
        raise ValueError(f"cannot paint label {label}: ids start at 1")
    locked = {int(i) for i in locked_ids}
    if label in locked:
        raise LockedLabelError(f"label {label} is locked")
    slice_yx = labels_zyx[z]
    mask = np.asarray(mask_yx, bool)
    if mask.shape != slice_yx.shape:
        raise ValueError(f"mask shape {mask.shape} != slice shape {slice_yx.shape}")
    own = slice_yx == label
    if overwrite_unlocked:
        writable = ~np.isin(slice_yx, list(locked)) if locked else np.ones_like(mask)
    else:
        writable = (slice_yx == 0) | own
    add = mask & writable & ~own
    remove = own & ~mask
    changed = add | remove
    flat = np.flatnonzero(changed)
    old_values = slice_yx[changed]  # boolean indexing walks in C order, like flatnonzero
    slice_yx[add] = label
    slice_yx[remove] = 0
    changed_index = flat.astype(np.int64) + flat_slice_offset(labels_zyx.shape, z)
    return changed_index, np.array(old_values, dtype=labels_zyx.dtype, copy=True)


def read_flat(labels_zyx: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Values at C-order flat indices, whatever the array's memory layout."""
    return labels_zyx[np.unravel_index(index, labels_zyx.shape)]


def write_flat(labels_zyx: np.ndarray, index: np.ndarray, values: np.ndarray) -> None:
    """Write values at C-order flat indices, whatever the array's memory layout."""
    labels_zyx[np.unravel_index(index, labels_zyx.shape)] = values
