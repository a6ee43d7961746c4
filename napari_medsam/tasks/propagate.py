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
from collections.abc import Hashable, Iterator
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
from napari_medsam.tasks.propagate_options import DEFAULT_OPTIONS, DIRECTIONS, PropagationOptions
from napari_medsam.tasks.segment import Window, embed_slice, predict_slice
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
    "PropagationOptions",
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
    cache_key_prefix: Hashable = None,
    options: PropagationOptions = DEFAULT_OPTIONS,
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
    cache_key_prefix : hashable, optional
        Identity of the volume for the embedding cache; None disables caching.
    options : PropagationOptions
        Direction, corrected (locked) slices, stop rule and thresholds, prompts
        from the previous mask, slabs, negatives; see
        :class:`~napari_medsam.tasks.propagate_options.PropagationOptions`.
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
    o = options
    n_z = int(volume_zyx.shape[0])
    if not 0 <= start_z < n_z:
        raise IndexError(f"start slice {start_z} is outside the volume (0..{n_z - 1})")
    seed = np.array(start_mask_yx, dtype=bool, copy=True)
    if seed.shape != tuple(volume_zyx.shape[1:]):
        raise ValueError(
            f"seed mask shape {seed.shape} != slice shape {tuple(volume_zyx.shape[1:])}"
        )
    negatives = o.negatives_from_zyx
    if negatives is not None and np.shape(negatives) != tuple(volume_zyx.shape):
        raise ValueError(
            f"labels of shape {np.shape(negatives)} for a volume of shape {volume_zyx.shape}"
        )
    mask_prompt = o.mask_prompt
    if mask_prompt is None:
        mask_prompt = "logits" if o.use_prev_logits else default_mask_prompt(engine)
    if mask_prompt not in MASK_PROMPTS:
        raise ValueError(f"mask_prompt must be one of {MASK_PROMPTS}, got {mask_prompt!r}")
    frame = mask_prompt_frame(engine) if mask_prompt != "none" else None
    if mask_prompt != "none" and frame is None:
        logger.info("%s: no mask-input frame, binary masks go without a mask prompt", engine.name)
    limits = stop_thresholds(
        o.stop_rule, o.stop_score, o.stop_overlap, o.min_area, o.spacing_zyx_mm, seed, o.seed_score
    )
    logger.debug("propagation of %s: stop thresholds %s", label, limits)
    locked = {int(z) for z in o.locked_zs}
    locked_masks = {int(z): np.asarray(m, bool) for z, m in (o.locked_masks or {}).items()}
    runs = _direction_zs(int(start_z), n_z, o.direction)
    total = sum(len(r) for _, r in runs)
    done = 0
    depth = engine_slab_depth(engine, o.slab_depth)
    clear_past_end, box_margin, use_point = o.clear_past_end, o.box_margin, o.use_point
    for side, zs in runs:
        outer = not locked.intersection(zs)  # no corrected slice further along
        prev_mask, prev_logits = seed, o.start_logits_lowres
        last_z, stop_z, reason = None, None, None
        if np.count_nonzero(prev_mask) < limits.min_area:
            stop_z = int(start_z)
            reason = f"seed area {np.count_nonzero(prev_mask)} px < {limits.min_area} px"
        slab_preds: list = []  # predictions of the current slab still to check
        for i, z in enumerate(zs):
            if reason is not None:
                if clear_past_end and outer:
                    yield Progress(done, total, f"clearing slice {z}")
                    yield SliceMask(z, int(label), np.zeros_like(seed), 0.0, None)
                    done += 1
                    continue
                done += len(zs) - i
                break
            yield Progress(done, total, f"propagating label {label}: slice {z}")
            done += 1
            if z in locked:
                mask = locked_masks.get(z)
                if o.stop_at_locked or mask is None or np.count_nonzero(mask) < limits.min_area:
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
                    if negatives is not None:
                        prompt = with_negatives_from_labels(prompt, negatives[z], label)
                    slab_preds = predict_slab(
                        engine, volume_zyx, window, slab, prompt, cache_key_prefix
                    )
                pred = slab_preds.pop(0)
            else:
                embedded = embed_slice(engine, volume_zyx, window, z, cache_key_prefix)
                prompt = prompt_from_mask(prev_mask, mask_in, box_margin, use_point)
                others_yx = None if negatives is None else negatives[z]
                pred = predict_slice(engine, embedded, prompt, label, others_yx)
            mask = np.array(pred.mask_yx, dtype=bool, copy=True)
            score = float(pred.score)
            area = int(np.count_nonzero(mask))
            why = limits.reason(area, score, mask_iou(mask, prev_mask))
            if why is not None:
                logger.debug("propagation of %s stops at slice %d: %s", label, z, why)
                stop_z, reason = z, why
                slab_preds = []
                if clear_past_end and outer:
                    yield SliceMask(z, int(label), np.zeros_like(seed), 0.0, None)
                continue
            logits = (
                None if pred.logits_lowres is None else np.array(pred.logits_lowres, np.float32)
            )
            yield SliceMask(z, int(label), mask, score, logits)
            prev_mask, prev_logits, last_z = mask, logits, z
        yield DirectionEnd(int(label), side, last_z, stop_z, reason or "end of the volume")
    yield Progress(total, total, f"propagated label {label}")
