"""The user's own edits of the labels (napari's brush, eraser, fill), as voxel diffs.

Qt-free and napari-free: napari hands its labels history items over as plain
objects, and :func:`history_item_to_flat` reads them by duck typing (the one reader
of napari's private ``_MaskedPaintAtom``, pinned by ``tests/test_labels_history.py``).
:func:`brush_edit` turns the items of one edit into the diffs the session records
(:meth:`~napari_medsam.session.annotation.AnnotationSession.record_edit`) and the
voxels of locked objects that must be put back: a lock holds against the brush too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np


def history_item_to_flat(item, shape_zyx: tuple[int, ...]):
    """Flatten one napari labels history item (a list of atoms) into voxel diffs.

    Handles both atom kinds of napari 0.9: the ``(indices, old, new)`` tuple of
    ``data_setitem`` and the masked bounding-box atom of the brush, fill and polygon.

    Returns
    -------
    index : np.ndarray
        (N,) int64 C-order flat indices (repeats possible, in edit order).
    old, new : np.ndarray
        (N,) values before and after each atom.
    """
    parts = []
    for atom in item:
        if hasattr(atom, "slice_key"):  # napari's _MaskedPaintAtom
            box = atom.slice_key
            starts = [s.start or 0 for s in box]
            stops = [
                s.stop if s.stop is not None else n for s, n in zip(box, shape_zyx, strict=True)
            ]
            grid = np.indices([b - a for a, b in zip(starts, stops, strict=True)]).reshape(
                len(box), -1
            )
            coords = grid + np.asarray(starts)[:, None]
            old = np.asarray(atom.old_values).reshape(-1)
            if atom.mask is not None:
                coords = coords[:, np.asarray(atom.mask).reshape(-1)]
            new = np.full(coords.shape[1], atom.new_value, dtype=old.dtype)
            index = np.ravel_multi_index(tuple(coords), shape_zyx)
        else:
            indices, old, new = atom
            index = np.ravel_multi_index(tuple(np.asarray(i) for i in indices), shape_zyx)
            index = np.asarray(index).reshape(-1)
            old = np.asarray(old).reshape(-1)
            new = np.broadcast_to(np.asarray(new), index.shape).copy()
        parts.append((np.asarray(index, np.int64), old, new))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


@dataclass(frozen=True)
class BrushEdit:
    """One user edit: the diffs to record and the locked voxels to put back.

    Attributes
    ----------
    index, old, new : np.ndarray
        (N,) flat C-order indices and values before / after, locked voxels left out.
    revert_index, revert_old : np.ndarray
        (M,) flat indices of locked voxels the edit changed, and their values before it.
    """

    index: np.ndarray
    old: np.ndarray
    new: np.ndarray
    revert_index: np.ndarray
    revert_old: np.ndarray

    @property
    def reverted(self) -> int:
        """Number of locked voxels to put back."""
        return int(self.revert_index.size)


def brush_edit(
    items: Iterable, shape_zyx: tuple[int, ...], locked_ids: Collection[int]
) -> BrushEdit:
    """The diffs of napari history ``items`` (one edit), split by the objects' locks.

    Parameters
    ----------
    items : iterable of history items
        Each a list of atoms (see :func:`history_item_to_flat`).
    shape_zyx : tuple of int
        (Z, Y, X) of the labels.
    locked_ids : collection of int
        Labels whose voxels no edit may change.
    """
    index, old, new = history_item_to_flat([a for item in items for a in item], shape_zyx)
    locked = list(locked_ids)
    bad = np.isin(old, locked) & (old != new) if locked else np.zeros(index.size, bool)
    if not bad.any():
        return BrushEdit(index, old, new, np.zeros(0, np.int64), old[:0])
    first = np.unique(index[bad], return_index=True)[1]  # first atom holds the true old value
    keep = ~np.isin(index, index[bad])
    return BrushEdit(index[keep], old[keep], new[keep], index[bad][first], old[bad][first])
