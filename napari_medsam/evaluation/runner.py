"""Run the simulated-click protocol on cases with any :class:`~napari_medsam.model.protocol.Engine`.

Every interaction goes through the app's own task,
:func:`napari_medsam.tasks.segment.segment_slice` (the app's windowing of the
slice, embedding cache key and :meth:`Engine.predict`, which does the resize and
prompt encoding); embeddings are precomputed with the app's
:func:`napari_medsam.tasks.segment.embed_slices`, and the box comes from
:func:`napari_medsam.prompts.geometry.box_from_mask`. Those are looked up on
their modules at call time, never copied, so the evaluation measures exactly
what the app does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from napari_medsam.evaluation.cases import Case
from napari_medsam.evaluation.clicker import Clicker
from napari_medsam.evaluation.metrics import CaseResult, overlap_counts
from napari_medsam.prompts import geometry
from napari_medsam.tasks import segment as segment_tasks
from napari_medsam.types import SliceMask, SlicePrompt

logger = logging.getLogger(__name__)

PROMPT_MODES = ("clicks", "box", "box+clicks")
#: A case stops once its IoU reaches this (the higher NoC threshold).
TARGET_IOU = 0.90

ProgressCallback = Callable[[int, int, Case], None]


def _record(result: CaseResult, pred_yx: np.ndarray, gt_yx: np.ndarray) -> float:
    inter, pred_area, gt_area = overlap_counts(pred_yx, gt_yx)
    union = pred_area + gt_area - inter
    value_iou = 1.0 if union == 0 else inter / union
    value_dice = 1.0 if pred_area + gt_area == 0 else 2.0 * inter / (pred_area + gt_area)
    if not result.ious:
        result.first_intersection, result.first_pred_area = inter, pred_area
    result.ious.append(float(value_iou))
    result.dices.append(float(value_dice))
    return value_iou


def _segment(
    engine, volume_zyx, window, z: int, prompt: SlicePrompt, label: int, prefix
) -> SliceMask:
    """Run the app's segment task to its end and return its SliceMask."""
    result = None
    for item in segment_tasks.segment_slice(
        engine, volume_zyx, window, z, prompt, label, prefix
    ):
        result = item
    if not isinstance(result, SliceMask):
        raise RuntimeError(f"segment_slice ended with {result!r}, not a SliceMask")
    return result


def evaluate_case(
    engine,
    volume_zyx: np.ndarray,
    window,
    gt_yx: np.ndarray,
    case: Case,
    prompt: str = "clicks",
    max_clicks: int = 20,
    target_iou: float = TARGET_IOU,
    cache_key_prefix: Hashable = "eval",
) -> CaseResult:
    """Simulate one user on one object slice.

    Parameters
    ----------
    engine : Engine
        The segmentation engine (embed once, predict many times).
    volume_zyx : np.ndarray
        (Z, Y, X) scan in stored intensities; slice ``case.z`` is segmented.
    window : napari_medsam.prompts.intensity.IntensityWindow
        Maps the slice to [0, 1], as the app does.
    gt_yx : np.ndarray
        (Y, X) bool truth of the object on slice ``case.z``.
    case : Case
        Identity of the case (label, z, area).
    prompt : {"clicks", "box", "box+clicks"}
        ``box``: one interaction, the tight box of the truth. ``box+clicks``:
        the box first, then clicks; the box stays in every later prompt.
    max_clicks : int
        Cap on interactions (the box counts as one).
    target_iou : float
        Stop once IoU reaches this.
    cache_key_prefix : hashable
        Identity of the scan in the engine's embedding cache.

    Returns
    -------
    CaseResult
        IoU / Dice / seconds after each interaction. The prediction is the
        engine's mask (logit > 0); its low-res logits are fed back with the next click.
    """
    if prompt not in PROMPT_MODES:
        raise ValueError(f"prompt must be one of {PROMPT_MODES}, got {prompt!r}")
    gt = np.asarray(gt_yx, bool)
    result = CaseResult(label=case.label, z=case.z, area=case.area)
    clicker = Clicker(gt)
    box_yxyx = None
    if prompt.startswith("box"):
        box_yxyx = geometry.box_from_mask(gt)
        if box_yxyx is None:
            raise ValueError(f"case {case} has an empty truth mask")
        box_yxyx = np.asarray(box_yxyx, np.float32)
    pred = np.zeros(gt.shape, bool)
    prev_logits = None
    limit = 1 if prompt == "box" else max_clicks
    for k in range(1, limit + 1):
        if prompt == "box" or (prompt == "box+clicks" and k == 1):
            slice_prompt = SlicePrompt(box_yxyx=box_yxyx)
        else:
            if clicker.make_next_click(pred) is None:
                break  # no unclicked error pixel left: the user is done
            slice_prompt = SlicePrompt(
                points_yx=clicker.points_yx,
                point_labels=clicker.point_labels,
                box_yxyx=box_yxyx,
                prev_logits_lowres=prev_logits,
            )
        t0 = time.perf_counter()
        out = _segment(
            engine, volume_zyx, window, case.z, slice_prompt, case.label, cache_key_prefix
        )
        result.click_seconds.append(time.perf_counter() - t0)
        pred = out.mask_yx
        prev_logits = out.logits_lowres
        if _record(result, pred, gt) >= target_iou:
            break
    return result


def evaluate_volume(
    engine,
    image_zyx: np.ndarray,
    labels_zyx: np.ndarray,
    window,
    cases: Sequence[Case],
    prompt: str = "clicks",
    max_clicks: int = 20,
    target_iou: float = TARGET_IOU,
    volume_key: Hashable = "eval",
    progress: ProgressCallback | None = None,
) -> list[CaseResult]:
    """Evaluate every case of one scan.

    Parameters
    ----------
    engine : Engine
    image_zyx : np.ndarray
        (Z, Y, X) scan in stored intensities (HU for CT), the reader's order.
    labels_zyx : np.ndarray
        (Z, Y, X) integer truth on the same grid.
    window : napari_medsam.prompts.intensity.IntensityWindow
        Applied to each slice exactly as the app does.
    cases : sequence of Case
        From :func:`napari_medsam.evaluation.cases.iter_cases`.
    prompt, max_clicks, target_iou
        As in :func:`evaluate_case`.
    volume_key : hashable
        Identifies the scan in embedding cache keys (the app's ``cache_key_prefix``).
    progress : callable, optional
        ``progress(done, total, case)`` after each case.

    Returns
    -------
    list of CaseResult
        One per case, in the order given. ``embed_seconds`` is set on the first
        case of each slice (the embedding is computed once per slice and reused
        by every click and every label on it).
    """
    if image_zyx.shape != labels_zyx.shape:
        raise ValueError(f"scan shape {image_zyx.shape} != labels shape {labels_zyx.shape}")
    results: list[CaseResult] = []
    current_z = None
    for i, case in enumerate(cases):
        embed_seconds = 0.0
        if case.z != current_z:
            t0 = time.perf_counter()
            for _ in segment_tasks.embed_slices(engine, image_zyx, window, [case.z], volume_key):
                pass
            embed_seconds = time.perf_counter() - t0
            current_z = case.z
        gt = case.gt_yx(labels_zyx)
        result = evaluate_case(
            engine, image_zyx, window, gt, case, prompt, max_clicks, target_iou, volume_key
        )
        result.embed_seconds = embed_seconds
        results.append(result)
        logger.debug("case %s: %d interactions, IoU %.3f", case, len(result.ious), result.ious[-1])
        if progress is not None:
            progress(i + 1, len(cases), case)
    return results
