"""Fill the slices between an object's annotated slices: shape interpolation, then the model.

Numpy / scipy only (plus whatever the engine needs); no Qt, no napari. As 3D
Slicer's and ITK-SNAP's "fill between slices", the masks on two annotated
slices ``a < b`` are interpolated through their signed distance maps
(:func:`interpolate_masks`); then, with ``refine``, each interpolated mask
prompts the model on its slice: its box (plus ``DEFAULT_BOX_MARGIN``) and, with
``refine="box+mask"`` on an engine that takes one, the mask itself as SAM's
dense ``mask_input``. A refined mask that disagrees with its interpolation
(IoU below ``DEFAULT_MIN_IOU``) is dropped for the interpolation: the two annotated
slices say more about a slice between them than one model call.

Measured (``benchmarks/sweep_fill.py``, bundled LiteMedSAM, two loose boxes 6
slices apart, Dice on the 5 slices between): interpolation only 0.909 (thin:
STS_002 sarcoma, totalseg spleen and kidney; truth anchors 0.921), refined from
the box 0.925, box + mask 0.925, propagation from both boxed slices 0.916; on
the 7.5 mm spinal-cord grey matter 0.104 / 0.180 / 0.135 / 0.173. Hence
``refine="box"`` and fill (not propagation) between corrected slices.

Like the other tasks this is a plain generator run on the worker: it yields
:class:`~napari_medsam.types.Progress` before each slice and one
:class:`~napari_medsam.types.SliceMask` (a copy) per filled slice. Locked
(hand-edited) slices are never yielded.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator, Mapping

import numpy as np
from scipy.ndimage import distance_transform_edt

from napari_medsam.model.protocol import Engine
from napari_medsam.tasks.propagate_prompts import (
    DEFAULT_BOX_MARGIN,
    mask_iou,
    mask_prompt_frame,
    mask_prompt_logits,
    prompt_from_mask,
)
from napari_medsam.tasks.segment import Window, embed_slice, predict_slice
from napari_medsam.types import Progress, SliceMask

#: How an interpolated mask is refined: ``"none"`` (kept as interpolated), ``"box"``
#: (the model, prompted by its box) or ``"box+mask"`` (box and mask as dense prompt).
REFINES = ("none", "box", "box+mask")
#: Measured with ``benchmarks/sweep_fill.py`` (see the module docstring).
DEFAULT_REFINE = "box"
#: A refined mask whose IoU with its interpolation is below this is not used.
DEFAULT_MIN_IOU = 0.5
#: Fewest pixels of an annotated slice that anchors a fill.
MIN_ANCHOR_AREA = 5


def signed_distance(mask_yx: np.ndarray, spacing_yx=(1.0, 1.0)) -> np.ndarray:
    """Signed Euclidean distance to a mask's boundary: negative inside, positive outside.

    Parameters
    ----------
    mask_yx : np.ndarray
        (H, W) bool, neither empty nor full.
    spacing_yx : tuple of float
        Pixel size (row, col), e.g. in mm.

    Returns
    -------
    np.ndarray
        (H, W) float64; half a pixel is added on each side of the boundary, so
        a pixel next to the boundary is at +-0.5 (the boundary lies between pixels).
    """
    mask = np.asarray(mask_yx, bool)
    outside = distance_transform_edt(~mask, sampling=spacing_yx)
    inside = distance_transform_edt(mask, sampling=spacing_yx)
    return np.where(mask, 0.5 - inside, outside - 0.5)


def interpolate_masks(
    mask_a_yx: np.ndarray, mask_b_yx: np.ndarray, t: float, spacing_yx=(1.0, 1.0)
) -> np.ndarray:
    """Shape-based interpolation: the mask a fraction ``t`` of the way from ``a`` to ``b``.

    ``(1 - t) * d_a + t * d_b < 0`` with ``d`` the :func:`signed_distance` maps
    (Raya & Udupa 1990; what 3D Slicer's and ITK-SNAP's interpolation do).

    Parameters
    ----------
    mask_a_yx, mask_b_yx : np.ndarray
        (H, W) bool, non-empty, same shape.
    t : float
        In [0, 1]: 0 gives ``a``, 1 gives ``b``.
    spacing_yx : tuple of float
        Pixel size (row, col).

    Returns
    -------
    np.ndarray
        (H, W) bool.
    """
    a, b = np.asarray(mask_a_yx, bool), np.asarray(mask_b_yx, bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of shapes {a.shape} and {b.shape}")
    if not (a.any() and b.any()):
        raise ValueError("cannot interpolate from an empty mask")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    d = (1.0 - t) * signed_distance(a, spacing_yx) + t * signed_distance(b, spacing_yx)
    return d < 0


def fill_gaps(anchor_zs: Collection[int], locked_zs: Collection[int] = ()) -> list[tuple[int, int, list[int]]]:
    """The gaps to fill: ``(a, b, zs)`` for neighbouring anchors ``a < b`` with slices between.

    ``zs`` lists the slices strictly between that are not locked.
    """
    anchors = sorted({int(z) for z in anchor_zs})
    locked = {int(z) for z in locked_zs}
    gaps = []
    for a, b in zip(anchors, anchors[1:]):
        zs = [z for z in range(a + 1, b) if z not in locked]
        if zs:
            gaps.append((a, b, zs))
    return gaps


def fill_between(
    engine: Engine | None,
    volume_zyx,
    window: Window | None,
    anchor_masks: Mapping[int, np.ndarray],
    label: int,
    cache_key_prefix: Hashable = None,
    locked_zs: Collection[int] = frozenset(),
    refine: str = DEFAULT_REFINE,
    spacing_zyx_mm=None,
) -> Iterator[Progress | SliceMask]:
    """Fill the slices between neighbouring annotated slices of one object.

    Parameters
    ----------
    engine : Engine or None
        The model; None only with ``refine="none"``.
    volume_zyx : array-like
        (Z, Y, X) image volume in stored intensities.
    window : IntensityWindow or None
        Maps a slice to [0, 1] for the model.
    anchor_masks : mapping of int to np.ndarray
        ``z -> (Y, X) bool`` masks of the annotated (prompted or corrected)
        slices. Anchors with fewer than :data:`MIN_ANCHOR_AREA` pixels end a gap
        without filling it (the object is not there).
    label : int
        Copied into every SliceMask.
    cache_key_prefix : hashable, optional
        Identity of the volume for the embedding cache.
    locked_zs : collection of int
        Slices never written (hand-edited slices that are no anchor).
    refine : {"none", "box", "box+mask"}
        See the module docstring.
    spacing_zyx_mm : sequence of 3 float, optional
        Voxel size; its in-plane part scales the distance maps.

    The interpolated mask's box is widened by ``DEFAULT_BOX_MARGIN`` pixels; a
    refined mask below ``DEFAULT_MIN_IOU`` IoU with its interpolation is not used.

    Yields
    ------
    Progress
        Before each slice.
    SliceMask
        One per filled slice (score: the model's, or 1.0 for a kept interpolation).
    """
    if refine not in REFINES:
        raise ValueError(f"refine must be one of {REFINES}, got {refine!r}")
    if refine != "none" and engine is None:
        raise ValueError("refining needs an engine")
    anchors = {int(z): np.asarray(m, bool) for z, m in anchor_masks.items()}
    n_z = int(volume_zyx.shape[0])
    for z, m in anchors.items():
        if not 0 <= z < n_z or m.shape != tuple(volume_zyx.shape[1:]):
            raise ValueError(f"anchor slice {z}: outside the volume or of another shape")
    spacing_yx = (1.0, 1.0) if spacing_zyx_mm is None else tuple(float(v) for v in spacing_zyx_mm[1:])
    gaps = [
        g for g in fill_gaps(anchors, locked_zs)
        if all(np.count_nonzero(anchors[e]) >= MIN_ANCHOR_AREA for e in g[:2])
    ]  # fmt: skip
    total = sum(len(zs) for _, _, zs in gaps)
    frame = mask_prompt_frame(engine) if refine == "box+mask" else None
    done = 0
    for a, b, zs in gaps:
        d_a = signed_distance(anchors[a], spacing_yx)
        d_b = signed_distance(anchors[b], spacing_yx)
        for z in zs:
            yield Progress(done, total, f"filling label {label}: slice {z} ({a}..{b})")
            done += 1
            t = (z - a) / float(b - a)
            interp = ((1.0 - t) * d_a + t * d_b) < 0
            if not interp.any():
                continue
            mask, score = interp, 1.0
            if refine != "none":
                mode = "binary" if refine == "box+mask" else "none"
                logits = mask_prompt_logits(mode, frame, interp, None)
                prompt = prompt_from_mask(interp, logits, DEFAULT_BOX_MARGIN, False)
                embedded = embed_slice(engine, volume_zyx, window, z, cache_key_prefix)
                pred = predict_slice(engine, embedded, prompt, label)
                if mask_iou(pred.mask_yx, interp) >= DEFAULT_MIN_IOU:
                    mask, score = pred.mask_yx, pred.score
            yield SliceMask(z, int(label), np.array(mask, bool, copy=True), score, None)
    yield Progress(total, total, f"filled {total} slices of label {label}")
