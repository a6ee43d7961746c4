"""Propagate one object's mask from a slice through its neighbours, up and down.

Numpy / scipy only (plus whatever the engine needs); no Qt, no napari. Like
:func:`napari_medsam.tasks.segment.segment_slice` this is a plain generator run
on the worker: it yields :class:`~napari_medsam.types.Progress` before each
model call (where a runner may stop a superseded job) and one
:class:`~napari_medsam.types.SliceMask` (copies) per finished slice.

Each slice is prompted from the result on the previous slice (the one nearer
the start): the box of that mask widened by ``box_margin`` pixels
(:func:`napari_medsam.prompts.geometry.box_from_mask`), optionally the previous
low-resolution logits as SAM's ``mask_input`` and a positive click at the
mask's interior (the maximum of its distance transform). A direction stops at
the first slice whose prediction is smaller than ``min_area`` pixels, whose
predicted IoU is below ``stop_score``, or whose overlap (IoU) with the previous
slice's mask is below ``stop_overlap``; that slice is not painted.

Directions run one after the other, ``"up"`` (increasing z) first, then
``"down"``: each direction is one chain of dependent predictions, so running
them in turn keeps the code simple and the embedding cache warm per direction.

Where the engine has SD-Trans (``engine.slab_depth > 1`` and ``predict_stack``,
see :mod:`napari_medsam.tasks.slab`) the slices are predicted a slab of D at a
time: every slice of the slab is prompted from the last finished slice, and the
stop rules still apply per slice (a stop discards the rest of the slab).

Default thresholds, measured
----------------------------
``benchmarks/sweep_propagation.py`` measures them on ``totalseg_ct_full`` (CT,
display grid 112 x 101 x 122, 3 mm, window 40/400) with the bundled LiteMedSAM
on CPU. For liver (5), spleen (1), kidney R (2), kidney L (3) and bladder (21)
the truth's mask on the organ's largest slice seeds one propagation with no
stop rule but an empty mask; each slice's predicted IoU, overlap with the
previous slice and area are recorded, and every threshold pair is replayed on
that chain with :func:`ends_direction` (a slice depends only on the slices
before, so the replay equals a run). Mean 3D Dice [liver spleen kidR kidL bladder]:

no stop rule 0.731; score >= 0.80: 0.872 (overlap 0.2 or 0.6 the same); score 0.80
with overlap 0.7: 0.896; **score >= 0.85: 0.901** [.826 .952 .904 .908 .914];
score >= 0.90: 0.716 (stops inside the organs); overlap >= 0.6 alone: 0.868.

Chosen: **score >= 0.85, overlap >= 0.6** (0.901). The liver decides the score:
from slice 94 down its chain grows beyond the liver with scores 0.81-0.87 and
overlaps 0.66-0.88, which only score >= 0.85 or overlap >= 0.7 stop; overlap 0.7
also cuts the kidneys' fast-shrinking last slices (.896/.897). Replaying score
thresholds 0.80-0.90 in steps of 0.01 (overlap 0.6), every organ's stop slices
are the same from 0.82 to 0.88 (within one slice); at 0.89 the spleen stops 20
slices early, so 0.85 sits in the middle of a plateau, not on a peak. Overlap
0.6 changes nothing at score 0.85 here; it is the backstop for an engine whose
predicted IoU is less well calibrated (overlap 0.6 alone: 0.868, no rule 0.731).
One scan and five organs: re-run the script for a new checkpoint.

Box margin (best thresholds): 0 px 0.700 (masks shrink), 2 px 0.901, 4 px 0.842 (masks grow).
Previous logits and the interior click stay off (not measured; clicks hurt LiteMedSAM).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Hashable, Iterator, Mapping

import numpy as np
from scipy.ndimage import distance_transform_edt

from napari_medsam.model.protocol import Engine
from napari_medsam.prompts.geometry import box_from_mask
from napari_medsam.prompts.negatives import with_negatives_from_labels
from napari_medsam.tasks.segment import Window, slice_key, windowed_slice
from napari_medsam.tasks.slab import engine_slab_depth, next_slab, predict_slab
from napari_medsam.types import Progress, SliceMask, SlicePrompt

logger = logging.getLogger(__name__)

#: Stop when the predicted IoU falls below this (``benchmarks/sweep_propagation.py``;
#: see the module docstring).
DEFAULT_STOP_SCORE = 0.85
#: Stop when IoU(this slice's mask, previous slice's mask) falls below this
#: (``benchmarks/sweep_propagation.py``; see the module docstring).
DEFAULT_STOP_OVERLAP = 0.6
#: Stop when the mask has fewer pixels than this.
DEFAULT_MIN_AREA = 5
#: Pixels added on each side of the previous slice's box.
DEFAULT_BOX_MARGIN = 2
#: Feed the previous slice's low-res logits as ``mask_input``.
DEFAULT_USE_PREV_LOGITS = False
#: Add a positive click at the previous mask's interior.
DEFAULT_USE_POINT = False

DIRECTIONS = ("both", "up", "down")


def default_settings() -> dict:
    """The measured defaults of :func:`propagate`, e.g. for a report."""
    return {
        "stop_score": DEFAULT_STOP_SCORE,
        "stop_overlap": DEFAULT_STOP_OVERLAP,
        "min_area": DEFAULT_MIN_AREA,
        "box_margin": DEFAULT_BOX_MARGIN,
        "use_prev_logits": DEFAULT_USE_PREV_LOGITS,
        "use_point": DEFAULT_USE_POINT,
    }


def interior_point_yx(mask_yx: np.ndarray) -> np.ndarray | None:
    """The pixel of a mask farthest from its boundary (distance-transform maximum).

    The image border counts as boundary. Ties go to the first pixel in raster order.

    Parameters
    ----------
    mask_yx : np.ndarray
        (H, W) bool mask.

    Returns
    -------
    np.ndarray or None
        (2,) float32 (row, col), or None for an empty mask.
    """
    mask = np.asarray(mask_yx, bool)
    if not mask.any():
        return None
    dt = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return np.array([y, x], np.float32)


def mask_iou(a_yx: np.ndarray, b_yx: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 0.0 when both are empty."""
    union = np.count_nonzero(a_yx | b_yx)
    return float(np.count_nonzero(a_yx & b_yx)) / union if union else 0.0


def ends_direction(
    area: int,
    score: float,
    overlap: float,
    stop_score: float = DEFAULT_STOP_SCORE,
    stop_overlap: float = DEFAULT_STOP_OVERLAP,
    min_area: int = DEFAULT_MIN_AREA,
) -> bool:
    """The stop rule of :func:`propagate` for one predicted slice.

    Parameters
    ----------
    area : int
        Pixels in the slice's predicted mask.
    score : float
        The model's predicted IoU for it.
    overlap : float
        IoU of the mask with the previous slice's mask (:func:`mask_iou`).
    stop_score, stop_overlap, min_area
        As in :func:`propagate`.

    Returns
    -------
    bool
        True when the direction ends at this slice (the slice is not painted).
    """
    return area < min_area or score < stop_score or overlap < stop_overlap


def prompt_from_mask(
    prev_mask_yx: np.ndarray,
    prev_logits_lowres: np.ndarray | None = None,
    box_margin: int = DEFAULT_BOX_MARGIN,
    use_point: bool = DEFAULT_USE_POINT,
) -> SlicePrompt:
    """Prompt for the next slice from the previous slice's mask.

    Parameters
    ----------
    prev_mask_yx : np.ndarray
        (H, W) bool, non-empty mask of the object on the neighbouring slice.
    prev_logits_lowres : np.ndarray, optional
        (256, 256) float32 low-res logits of that mask (model frame), passed on
        as ``prev_logits_lowres``; None leaves the model without a mask input.
    box_margin : int
        Pixels added on each side of the mask's box, clipped to the slice.
    use_point : bool
        Add one positive click at :func:`interior_point_yx`.

    Returns
    -------
    SlicePrompt
        In the slice's (row, col) pixel frame.
    """
    box = box_from_mask(prev_mask_yx)
    if box is None:
        raise ValueError("cannot prompt from an empty mask")
    h, w = prev_mask_yx.shape
    m = float(box_margin)
    box = np.array(
        [
            max(box[0] - m, 0.0),
            max(box[1] - m, 0.0),
            min(box[2] + m, h - 1.0),
            min(box[3] + m, w - 1.0),
        ],
        np.float32,
    )
    if use_point:
        points = interior_point_yx(prev_mask_yx).reshape(1, 2)
        labels = np.ones(1, np.int64)
    else:
        points, labels = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    logits = None if prev_logits_lowres is None else np.asarray(prev_logits_lowres, np.float32)
    return SlicePrompt(
        points_yx=points, point_labels=labels, box_yxyx=box, prev_logits_lowres=logits
    )


def _direction_zs(start_z: int, n_z: int, direction: str) -> list[list[int]]:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    runs = []
    if direction in ("both", "up"):
        runs.append(list(range(start_z + 1, n_z)))
    if direction in ("both", "down"):
        runs.append(list(range(start_z - 1, -1, -1)))
    return runs


def propagate(
    engine: Engine,
    volume_zyx,
    window: Window,
    start_z: int,
    start_mask_yx: np.ndarray,
    label: int,
    job_id: int,
    cache_key_prefix: Hashable = None,
    locked_zs: Collection[int] = frozenset(),
    locked_masks: Mapping[int, np.ndarray] | None = None,
    stop_score: float = DEFAULT_STOP_SCORE,
    stop_overlap: float = DEFAULT_STOP_OVERLAP,
    min_area: int = DEFAULT_MIN_AREA,
    direction: str = "both",
    start_logits_lowres: np.ndarray | None = None,
    box_margin: int = DEFAULT_BOX_MARGIN,
    use_prev_logits: bool = DEFAULT_USE_PREV_LOGITS,
    use_point: bool = DEFAULT_USE_POINT,
    clear_past_end: bool = False,
    stop_at_locked: bool = False,
    slab_depth: int | None = None,
    negatives_from_zyx: np.ndarray | None = None,
) -> Iterator[Progress | SliceMask]:
    """Segment one object on the slices above and below ``start_z``.

    Parameters
    ----------
    engine : Engine
        The model (embed once, predict many).
    volume_zyx : array-like
        (Z, Y, X) image volume in its stored intensities.
    window : IntensityWindow
        Maps a slice to [0, 1] for the model.
    start_z : int
        Slice (axis 0) holding the seed mask; it is not re-segmented nor yielded.
    start_mask_yx : np.ndarray
        (Y, X) bool mask of the object on ``start_z``.
    label : int
        Label id copied into every SliceMask.
    job_id : int
        Request id copied into every yielded item.
    cache_key_prefix : hashable, optional
        Identity of the volume for the embedding cache; None disables caching.
    locked_zs : collection of int
        Slices corrected by hand: never predicted nor yielded. Propagation
        passes through a locked slice using ``locked_masks[z]`` as the new seed;
        a locked slice with no entry in ``locked_masks``, or whose mask is
        smaller than ``min_area``, ends the direction there.
    locked_masks : mapping of int to np.ndarray, optional
        ``z -> (Y, X) bool`` mask of this object on locked slices.
    stop_score : float
        A direction ends at the first slice whose predicted IoU is below this.
    stop_overlap : float
        ... or whose IoU with the previous slice's mask is below this.
    min_area : int
        ... or whose mask has fewer pixels than this (the object vanished).
    direction : {"both", "up", "down"}
        ``"up"`` is increasing z. ``"both"`` runs up first, then down.
    start_logits_lowres : np.ndarray, optional
        (256, 256) logits of the seed, used as the first mask input.
    box_margin : int
        Pixels added on each side of the box taken from the previous mask.
    use_prev_logits : bool
        Pass the previous slice's low-res logits as ``prev_logits_lowres``.
    use_point : bool
        Add a positive click at the previous mask's interior.
    clear_past_end : bool
        When a direction ends and no locked slice lies further along it (the
        object's outer end), yield empty masks (score 0.0) for every slice
        beyond, so that re-propagation removes what an earlier, longer
        propagation painted there. Between the start and a locked slice nothing
        is cleared: the corrected slice says the object goes on.
    stop_at_locked : bool
        End a direction at the first locked slice instead of passing through
        it: after a correction, only the slices between it and its neighbouring
        corrected slices are re-segmented (beyond them nothing changed).
    slab_depth : int, optional
        Slices per model call where the engine segments slabs (SD-Trans): None
        uses the engine's ``slab_depth``, 1 forces the per-slice path. Ignored
        for engines without ``predict_stack``.
    negatives_from_zyx : np.ndarray, optional
        (Z, Y, X) integer labels copied when the job was made (never a live
        layer). When given, the other objects on each predicted slice that lie
        in its box add negative clicks
        (:func:`napari_medsam.prompts.negatives.with_negatives_from_labels`); a
        slab takes those of its first slice.

    Yields
    ------
    Progress
        Before each slice; ``total`` is the number of slices propagation could
        reach, and ``done`` jumps to the end of a direction when it stops.
    SliceMask
        (Y, X) bool mask of one finished slice (a copy), in propagation order.
    """
    n_z = int(volume_zyx.shape[0])
    if not 0 <= start_z < n_z:
        raise IndexError(f"start slice {start_z} is outside the volume (0..{n_z - 1})")
    seed = np.array(start_mask_yx, dtype=bool, copy=True)
    if seed.shape != tuple(volume_zyx.shape[1:]):
        raise ValueError(
            f"seed mask shape {seed.shape} != slice shape {tuple(volume_zyx.shape[1:])}"
        )
    if negatives_from_zyx is not None and np.shape(negatives_from_zyx) != tuple(volume_zyx.shape):
        raise ValueError(
            f"labels of shape {np.shape(negatives_from_zyx)} for a volume of shape {volume_zyx.shape}"
        )
    locked = {int(z) for z in locked_zs}
    locked_masks = {int(z): np.asarray(m, bool) for z, m in (locked_masks or {}).items()}
    runs = _direction_zs(int(start_z), n_z, direction)
    total = sum(len(r) for r in runs)
    done = 0
    depth = engine_slab_depth(engine, slab_depth)
    for zs in runs:
        outer = not locked.intersection(zs)  # no corrected slice further along
        prev_mask = seed
        prev_logits = start_logits_lowres if use_prev_logits else None
        ended = np.count_nonzero(prev_mask) < min_area
        slab_preds: list = []  # predictions of the current slab still to check
        for i, z in enumerate(zs):
            if ended:
                if clear_past_end and outer:
                    yield Progress(job_id, done, total, f"clearing slice {z}")
                    yield SliceMask(job_id, z, int(label), np.zeros_like(seed), 0.0, None)
                    done += 1
                    continue
                done += len(zs) - i
                break
            yield Progress(job_id, done, total, f"propagating label {label}: slice {z}")
            done += 1
            if z in locked:
                mask = locked_masks.get(z)
                if stop_at_locked or mask is None or np.count_nonzero(mask) < min_area:
                    logger.debug("propagation of %s ends at locked slice %d", label, z)
                    ended = True
                    continue
                prev_mask, prev_logits = mask, None
                continue
            if depth > 1:
                if not slab_preds:  # prompt the whole slab from the last finished slice
                    prompt = prompt_from_mask(prev_mask, prev_logits, box_margin, use_point)
                    slab = next_slab(zs, i, depth, locked)
                    if negatives_from_zyx is not None:
                        prompt = with_negatives_from_labels(prompt, negatives_from_zyx[z], label)
                    slab_preds = predict_slab(
                        engine, volume_zyx, window, slab, prompt, cache_key_prefix
                    )
                pred = slab_preds.pop(0)
            else:
                image_yx = windowed_slice(volume_zyx, z, window)
                key = None if cache_key_prefix is None else slice_key(cache_key_prefix, z, window)
                engine.embed(image_yx, key)
                prompt = prompt_from_mask(prev_mask, prev_logits, box_margin, use_point)
                if negatives_from_zyx is not None:
                    prompt = with_negatives_from_labels(prompt, negatives_from_zyx[z], label)
                pred = engine.predict(image_yx, prompt, key)
            mask = np.array(pred.mask_yx, dtype=bool, copy=True)
            score = float(pred.score)
            area = int(np.count_nonzero(mask))
            overlap = mask_iou(mask, prev_mask)
            if ends_direction(area, score, overlap, stop_score, stop_overlap, min_area):
                logger.debug(
                    "propagation of %s stops at slice %d (area %d, score %.3f, overlap %.3f)",
                    label, z, area, score, overlap,
                )  # fmt: skip
                ended = True
                slab_preds = []
                if clear_past_end and outer:
                    yield SliceMask(job_id, z, int(label), np.zeros_like(seed), 0.0, None)
                continue
            logits = (
                None if pred.logits_lowres is None else np.array(pred.logits_lowres, np.float32)
            )
            yield SliceMask(job_id, z, int(label), mask, score, logits)
            prev_mask = mask
            prev_logits = logits if use_prev_logits else None
    yield Progress(job_id, total, total, f"propagated label {label}")
