"""The slice mask of SAM's low-res logits, computed only where it can be non-empty.

:func:`napari_medsam.prompts.geometry.lowres_logits_to_slice` resamples the
whole (256, 256) logit map onto the (H, W) slice: for a 512 x 512 slice that
is ~100 M multiply-adds per click, plus ~70 M to compose its matrices. The mask
is ``logits > 0``, and each slice pixel is a convex combination (non-negative
weights summing to 1) of a few low-res logits. So a slice pixel whose low-res
neighbours are all <= 0 is <= 0 itself: outside the rows and columns reached
from the positive low-res logits the mask is empty, exactly. This module
resamples only that window, with the matrices cached per slice shape
(:func:`~napari_medsam.prompts.geometry.lowres_to_slice_matrix`): the same
mask, bit for bit in exact arithmetic, at a fraction of the cost.

The resampling is applied as what it is, a few weighted taps per output row and
column (:func:`_taps`), with elementwise numpy, not as dense matrix products:
numpy's OpenBLAS wakes its worker threads for a product of this size, and they
then spin for ~0.1 s (CPU burnt in a 200 ms sleep after one call: 45-100 ms on
2 cores), taking a core from the next click's decoder or the prefetch.
"""

from __future__ import annotations

import functools

import numpy as np

from napari_medsam.prompts.geometry import lowres_to_slice_matrix, resized_shape


def _window(m: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, slice]:
    """Slice indices reached from the positive low-res indices, and the low-res support.

    Positive logits in the padding (longest-side resize) reach no slice pixel.
    """
    reached = np.flatnonzero(m[:, positive].any(axis=1))
    if reached.size == 0:
        return reached, slice(0, 0)
    support = np.flatnonzero(m[reached].any(axis=0))
    return reached, slice(int(support[0]), int(support[-1]) + 1)


@functools.lru_cache(maxsize=16)
def _taps(n_slice: int, n_resized: int, side: int, n_lowres: int) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero entries of each row of :func:`lowres_to_slice_matrix`, as taps.

    Returns
    -------
    index : np.ndarray
        (n_slice, K) int64 low-res index of each tap (rows with fewer than K
        non-zeros repeat their first index with weight 0).
    weight : np.ndarray
        (n_slice, K) float64 the matrix entries.
    """
    m = lowres_to_slice_matrix(n_slice, n_resized, side, n_lowres)
    nonzero = m != 0
    k = max(1, int(nonzero.sum(axis=1).max()))
    index = np.zeros((m.shape[0], k), np.int64)
    weight = np.zeros((m.shape[0], k), np.float64)
    for row in range(m.shape[0]):
        cols = np.flatnonzero(nonzero[row])
        if cols.size:
            index[row] = cols[0]
            index[row, : cols.size] = cols
            weight[row, : cols.size] = m[row, cols]
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight


def _apply_rows(index: np.ndarray, weight: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(n, C) = the taps (n, K) applied to the rows of ``values`` (L, C)."""
    out = weight[:, 0:1] * values[index[:, 0]]
    for j in range(1, index.shape[1]):
        out += weight[:, j : j + 1] * values[index[:, j]]
    return out


def lowres_logits_to_mask(
    logits_lowres: np.ndarray, hw: tuple[int, int], side: int, resize: str
) -> np.ndarray:
    """(H, W) bool mask ``lowres_logits_to_slice(logits, hw, side, resize) > 0``, fast.

    Parameters
    ----------
    logits_lowres : np.ndarray
        (h, w) float logits in the model frame (256 x 256 for released models).
    hw : tuple of int
        (H, W) of the slice.
    side : int
        Model input side.
    resize : str
        ``"longest_side"`` or ``"stretch"``.

    Returns
    -------
    np.ndarray
        (H, W) bool.
    """
    logits = np.asarray(logits_lowres, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"expected 2-D low-res logits, got shape {logits.shape}")
    h, w = int(hw[0]), int(hw[1])
    mask = np.zeros((h, w), dtype=bool)
    positive = logits > 0
    rows_pos = np.flatnonzero(positive.any(axis=1))
    if rows_pos.size == 0:
        return mask
    cols_pos = np.flatnonzero(positive.any(axis=0))
    new_h, new_w = resized_shape((h, w), side, resize)
    my = lowres_to_slice_matrix(h, new_h, side, logits.shape[0])
    mx = lowres_to_slice_matrix(w, new_w, side, logits.shape[1])
    rows, support_r = _window(my, rows_pos)
    cols, support_c = _window(mx, cols_pos)
    if rows.size == 0 or cols.size == 0:
        return mask
    # rows / cols are contiguous runs (bilinear supports are intervals): slice, don't fancy-index
    r, c = slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
    iy, wy = _taps(h, new_h, side, logits.shape[0])
    ix, wx = _taps(w, new_w, side, logits.shape[1])
    cols_lowres = logits[:, support_c]
    part_rows = _apply_rows(iy[r], wy[r], cols_lowres)  # (rows, support_c)
    part = _apply_rows(ix[c] - support_c.start, wx[c], part_rows.T).T  # (rows, cols)
    mask[r, c] = part > 0
    return mask
