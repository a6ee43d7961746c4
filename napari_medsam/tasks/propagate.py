"""Propagate one object's mask from a slice through its neighbours, up and down.

Numpy / scipy only (plus whatever the engine needs); no Qt, no napari. Like
:func:`napari_medsam.tasks.segment.segment_slice` this is a plain generator run
on the worker: it yields :class:`~napari_medsam.types.Progress` before each
model call (where a runner may stop a superseded job), one
:class:`~napari_medsam.types.SliceMask` (copies) per finished slice and one
:class:`~napari_medsam.types.DirectionEnd` per direction (where it stopped and why).

Each slice is prompted from the result on the previous slice (the one nearer
the start, :mod:`napari_medsam.tasks.propagate_prompts`): the box of that mask
widened by ``box_margin`` pixels, optionally that mask as SAM's dense
``mask_input`` (``mask_prompt``) and a positive click at the mask's interior. A
direction stops at the first slice where the run's
:class:`~napari_medsam.tasks.stop_rules.StopThresholds` give a reason (too
small, predicted IoU too low, too little overlap with the previous slice);
that slice is not painted. The thresholds are fitted to the scan and the object
(slice spacing, seed size, seed score) by a
:class:`~napari_medsam.tasks.stop_rules.StopRule`; the defaults and their
measurement are in :mod:`napari_medsam.tasks.stop_rules`.

Directions run one after the other, ``"up"`` (increasing z) first, then
``"down"``: each direction is one chain of dependent predictions, so running
them in turn keeps the code simple and the embedding cache warm per direction.

Where the engine has SD-Trans (``engine.slab_depth > 1`` and ``predict_stack``,
see :mod:`napari_medsam.tasks.slab`) the slices are predicted a slab of D at a
time: every slice of the slab is prompted from the last finished slice, and the
stop rules still apply per slice (a stop discards the rest of the slab).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Hashable, Iterator, Mapping
from dataclasses import replace

import numpy as np

from napari_medsam.model.protocol import Engine
from napari_medsam.prompts.negatives import with_negatives_from_labels
from napari_medsam.tasks.propagate_prompts import (
    DEFAULT_BOX_MARGIN,
    DEFAULT_USE_POINT,
    MASK_PROMPTS,
    default_mask_prompt,
    interior_point_yx,
    mask_iou,
    mask_prompt_frame,
    mask_prompt_logits,
    prompt_from_mask,
)
from napari_medsam.tasks.segment import Window, slice_key, windowed_slice
from napari_medsam.tasks.slab import engine_slab_depth, next_slab, predict_slab
from napari_medsam.tasks.stop_rules import DEFAULT_STOP_RULE, StopRule, StopThresholds
from napari_medsam.types import DirectionEnd, Progress, SliceMask

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BOX_MARGIN",
    "DEFAULT_MIN_AREA",
    "DEFAULT_STOP_OVERLAP",
    "DEFAULT_STOP_SCORE",
    "DIRECTIONS",
    "MASK_PROMPTS",
    "default_settings",
    "ends_direction",
    "interior_point_yx",
    "mask_iou",
    "prompt_from_mask",
    "propagate",
    "stop_thresholds",
]

#: The default rule's absolute floors (see :data:`~napari_medsam.tasks.stop_rules.DEFAULT_STOP_RULE`).
DEFAULT_STOP_SCORE = DEFAULT_STOP_RULE.stop_score
DEFAULT_STOP_OVERLAP = DEFAULT_STOP_RULE.stop_overlap
#: Stop when the mask has fewer pixels than this.
DEFAULT_MIN_AREA = DEFAULT_STOP_RULE.min_area
#: Kept for callers of the old flag: True means ``mask_prompt="logits"``.
DEFAULT_USE_PREV_LOGITS = False

DIRECTIONS = ("both", "up", "down")


def default_settings() -> dict:
    """The measured defaults of :func:`propagate`, e.g. for a report."""
    rule = DEFAULT_STOP_RULE
    return {
        "stop_score": rule.stop_score,
        "stop_overlap": rule.stop_overlap,
        "min_area": rule.min_area,
        "score_ratio": rule.score_ratio,
        "overlap_slope": rule.overlap_slope,
        "overlap_min": rule.overlap_min,
        "box_margin": DEFAULT_BOX_MARGIN,
        "mask_prompt": "engine default (box only for the bundled LiteMedSAM)",
        "use_point": DEFAULT_USE_POINT,
    }


def ends_direction(
    area: int,
    score: float,
    overlap: float,
    stop_score: float = DEFAULT_STOP_SCORE,
    stop_overlap: float = DEFAULT_STOP_OVERLAP,
    min_area: int = DEFAULT_MIN_AREA,
) -> bool:
    """The fixed-threshold stop rule for one predicted slice (True: the slice is not painted).

    Equal to ``StopThresholds(stop_score, stop_overlap, min_area).reason(...) is not None``.
    """
    thresholds = StopThresholds(float(stop_score), float(stop_overlap), int(min_area))
    return thresholds.reason(area, score, overlap) is not None


def stop_thresholds(
    stop_rule: StopRule | None = None,
    stop_score: float | None = None,
    stop_overlap: float | None = None,
    min_area: int | None = None,
    spacing_zyx_mm=None,
    seed_mask_yx: np.ndarray | None = None,
    seed_score: float | None = None,
) -> StopThresholds:
    """The thresholds a :func:`propagate` run applies: the rule (default
    :data:`~napari_medsam.tasks.stop_rules.DEFAULT_STOP_RULE`) with the explicit
    floors given, fitted to the spacing, the seed and its score."""
    rule = (stop_rule or DEFAULT_STOP_RULE).with_overrides(stop_score, stop_overlap)
    if min_area is not None:
        rule = replace(rule, min_area=int(min_area))
    return rule.fit(spacing_zyx_mm, seed_mask_yx, seed_score)


def _direction_zs(start_z: int, n_z: int, direction: str) -> list[tuple[str, list[int]]]:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    runs = []
    if direction in ("both", "up"):
        runs.append(("up", list(range(start_z + 1, n_z))))
    if direction in ("both", "down"):
        runs.append(("down", list(range(start_z - 1, -1, -1))))
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
    stop_score: float | None = None,
    stop_overlap: float | None = None,
    min_area: int | None = None,
    direction: str = "both",
    start_logits_lowres: np.ndarray | None = None,
    box_margin: int = DEFAULT_BOX_MARGIN,
    use_prev_logits: bool = DEFAULT_USE_PREV_LOGITS,
    use_point: bool = DEFAULT_USE_POINT,
    clear_past_end: bool = False,
    stop_at_locked: bool = False,
    slab_depth: int | None = None,
    negatives_from_zyx: np.ndarray | None = None,
    stop_rule: StopRule | None = None,
    spacing_zyx_mm=None,
    seed_score: float | None = None,
    mask_prompt: str | None = None,
) -> Iterator[Progress | SliceMask | DirectionEnd]:
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
        smaller than the minimum area, ends the direction there.
    locked_masks : mapping of int to np.ndarray, optional
        ``z -> (Y, X) bool`` mask of this object on locked slices.
    stop_score, stop_overlap : float, optional
        Explicit floors of the predicted IoU and of the IoU with the previous
        slice's mask; given, they replace the rule's fitted ones (the user's number).
    min_area : int, optional
        A direction ends at a mask with fewer pixels (default: the rule's).
    direction : {"both", "up", "down"}
        ``"up"`` is increasing z. ``"both"`` runs up first, then down.
    start_logits_lowres : np.ndarray, optional
        (L, L) logits of the seed, the first mask input in ``"logits"`` mode.
    box_margin : int
        Pixels added on each side of the box taken from the previous mask.
    use_prev_logits : bool
        Old name of ``mask_prompt="logits"`` (used when ``mask_prompt`` is None).
    use_point : bool
        Add a positive click at the previous mask's interior.
    clear_past_end : bool
        When a direction ends and no locked slice lies further along it (the
        object's outer end), yield empty masks (score 0.0) for every slice
        beyond, so that re-propagation removes what an earlier, longer
        propagation painted there. Between the start and a locked slice nothing
        is cleared: the corrected slice says the object goes on.
    stop_at_locked : bool
        End a direction at the first locked slice instead of passing through it.
    slab_depth : int, optional
        Slices per model call where the engine segments slabs (SD-Trans): None
        uses the engine's ``slab_depth``, 1 forces the per-slice path.
    negatives_from_zyx : np.ndarray, optional
        (Z, Y, X) integer labels copied when the job was made (never a live
        layer); the other objects in each predicted slice's box add negative clicks.
    stop_rule : StopRule, optional
        Default :data:`~napari_medsam.tasks.stop_rules.DEFAULT_STOP_RULE`.
    spacing_zyx_mm : sequence of 3 float, optional
        Voxel size, for the rule's spacing scaling (None: no scaling).
    seed_score : float, optional
        Predicted IoU of the seed, for the rule's relative score floor.
    mask_prompt : {"none", "logits", "binary"}, optional
        The previous mask as SAM's dense prompt (see
        :data:`~napari_medsam.tasks.propagate_prompts.MASK_PROMPTS`); None: the
        engine's choice (:func:`~napari_medsam.tasks.propagate_prompts.default_mask_prompt`).
        Engines without a mask input get box-only prompts.

    Yields
    ------
    Progress
        Before each slice; ``total`` is the number of slices propagation could
        reach, and ``done`` jumps to the end of a direction when it stops.
    SliceMask
        (Y, X) bool mask of one finished slice (a copy), in propagation order.
    DirectionEnd
        After each direction: the last slice painted, where and why it stopped.
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
    if mask_prompt is None:
        mask_prompt = "logits" if use_prev_logits else default_mask_prompt(engine)
    if mask_prompt not in MASK_PROMPTS:
        raise ValueError(f"mask_prompt must be one of {MASK_PROMPTS}, got {mask_prompt!r}")
    frame = mask_prompt_frame(engine) if mask_prompt != "none" else None
    if mask_prompt != "none" and frame is None:
        logger.info("%s: no mask-input frame, binary masks go without a mask prompt", engine.name)
    limits = stop_thresholds(
        stop_rule, stop_score, stop_overlap, min_area, spacing_zyx_mm, seed, seed_score
    )
    logger.debug("propagation of %s: stop thresholds %s", label, limits)
    locked = {int(z) for z in locked_zs}
    locked_masks = {int(z): np.asarray(m, bool) for z, m in (locked_masks or {}).items()}
    runs = _direction_zs(int(start_z), n_z, direction)
    total = sum(len(r) for _, r in runs)
    done = 0
    depth = engine_slab_depth(engine, slab_depth)
    for side, zs in runs:
        outer = not locked.intersection(zs)  # no corrected slice further along
        prev_mask, prev_logits = seed, start_logits_lowres
        last_z, stop_z, reason = None, None, None
        if np.count_nonzero(prev_mask) < limits.min_area:
            stop_z = int(start_z)
            reason = f"seed area {np.count_nonzero(prev_mask)} px < {limits.min_area} px"
        slab_preds: list = []  # predictions of the current slab still to check
        for i, z in enumerate(zs):
            if reason is not None:
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
                if stop_at_locked or mask is None or np.count_nonzero(mask) < limits.min_area:
                    stop_z, reason = z, "corrected slice"
                    if mask is None or np.count_nonzero(mask) < limits.min_area:
                        reason = "corrected slice without the object"
                    continue
                prev_mask, prev_logits = mask, None
                continue
            mask_in = mask_prompt_logits(mask_prompt, frame, prev_mask, prev_logits)
            if depth > 1:
                if not slab_preds:  # prompt the whole slab from the last finished slice
                    prompt = prompt_from_mask(prev_mask, mask_in, box_margin, use_point)
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
                prompt = prompt_from_mask(prev_mask, mask_in, box_margin, use_point)
                if negatives_from_zyx is not None:
                    prompt = with_negatives_from_labels(prompt, negatives_from_zyx[z], label)
                pred = engine.predict(image_yx, prompt, key)
            mask = np.array(pred.mask_yx, dtype=bool, copy=True)
            score = float(pred.score)
            area = int(np.count_nonzero(mask))
            why = limits.reason(area, score, mask_iou(mask, prev_mask))
            if why is not None:
                logger.debug("propagation of %s stops at slice %d: %s", label, z, why)
                stop_z, reason = z, why
                slab_preds = []
                if clear_past_end and outer:
                    yield SliceMask(job_id, z, int(label), np.zeros_like(seed), 0.0, None)
                continue
            logits = (
                None if pred.logits_lowres is None else np.array(pred.logits_lowres, np.float32)
            )
            yield SliceMask(job_id, z, int(label), mask, score, logits)
            prev_mask, prev_logits, last_z = mask, logits, z
        yield DirectionEnd(
            job_id, int(label), side, last_z, stop_z, reason or "end of the volume"
        )
    yield Progress(job_id, total, total, f"propagated label {label}")
