"""Run a re-propagation plan (:mod:`napari_medsam.tasks.policy`) as one task.

Numpy / scipy only (plus the engine); no Qt. One generator for the app's
Re-propagate, the 3D protocol's step after each click and ``Fill between``:
it yields what :func:`~napari_medsam.tasks.propagate.propagate` and
:func:`~napari_medsam.tasks.fill.fill_between` yield, step after step.
Corrected slices are anchors and locked: never yielded.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterator, Mapping

import numpy as np

from napari_medsam.model.protocol import Engine
from napari_medsam.tasks.policy import DEFAULT_POLICY, RepropagationPolicy, plan_repropagation
from napari_medsam.tasks.fill import DEFAULT_REFINE, fill_between
from napari_medsam.tasks.propagate import propagate
from napari_medsam.tasks.propagate_options import DEFAULT_OPTIONS, PropagationOptions
from napari_medsam.tasks.segment import Window
from napari_medsam.types import DirectionEnd, Progress, SliceMask


def repropagate(
    engine: Engine,
    volume_zyx,
    window: Window,
    changed_zs: int | Collection[int],
    corrected_masks: Mapping[int, np.ndarray],
    label: int,
    cache_key_prefix: Hashable = None,
    policy: RepropagationPolicy = DEFAULT_POLICY,
    options: PropagationOptions = DEFAULT_OPTIONS,
    seed_scores: Mapping[int, float] | None = None,
) -> Iterator[Progress | SliceMask | DirectionEnd]:
    """Spread the corrections of slices ``changed_zs`` as the policy plans it.

    Parameters
    ----------
    engine : Engine
    volume_zyx : array-like
        (Z, Y, X) image volume.
    window : IntensityWindow
    changed_zs : int or collection of int
        The slices corrected since the last run (keys of ``corrected_masks``).
    corrected_masks : mapping of int to np.ndarray
        ``z -> (Y, X) bool`` mask of the object on every corrected slice.
    label : int
    cache_key_prefix : hashable, optional
    policy : RepropagationPolicy
        Gaps, clearing past the end, the fill's refinement.
    options : PropagationOptions
        Stop rule, thresholds, mask prompt, negatives, spacing (also the fill's
        distance maps) of every propagation step; the steps set the direction,
        the locked slices, ``stop_at_locked`` and ``clear_past_end`` themselves.
    seed_scores : mapping of int to float, optional
        The model's predicted IoU on corrected slices it segmented (for the stop
        rule's score floor relative to the seed); slices without one: unknown.
    """
    masks = {int(k): np.asarray(v, bool) for k, v in corrected_masks.items()}
    changed = {int(changed_zs)} if isinstance(changed_zs, int) else {int(z) for z in changed_zs}
    if not changed <= set(masks):
        raise ValueError(f"slices {sorted(changed - set(masks))} are not corrected slices of label {label}")
    for step in plan_repropagation(changed, masks, policy):
        if step.kind == "fill":
            anchors = {step.start_z: masks[step.start_z], step.end_z: masks[step.end_z]}
            yield from fill_between(
                engine, volume_zyx, window, anchors, label, cache_key_prefix,
                locked_zs=set(masks), refine=policy.fill_refine,
                spacing_zyx_mm=options.spacing_zyx_mm,
            )  # fmt: skip
            continue
        z = step.start_z
        others = {k: v for k, v in masks.items() if k != z}
        run = options.replace(
            locked_zs=set(others), locked_masks=others, direction=step.direction,
            stop_at_locked=True, clear_past_end=step.clear_past_end,
            seed_score=(seed_scores or {}).get(z),
        )  # fmt: skip
        yield from propagate(engine, volume_zyx, window, z, masks[z], label, cache_key_prefix, run)


def fill_object(
    engine: Engine | None,
    volume_zyx,
    window: Window | None,
    corrected_masks: Mapping[int, np.ndarray],
    label: int,
    cache_key_prefix: Hashable = None,
    fill_refine: str = DEFAULT_REFINE,
    spacing_zyx_mm=None,
) -> Iterator[Progress | SliceMask]:
    """``Fill between``: every gap between the object's corrected slices, corrected ones kept."""
    masks = {int(k): np.asarray(v, bool) for k, v in corrected_masks.items()}
    yield from fill_between(
        engine, volume_zyx, window, masks, label, cache_key_prefix,
        locked_zs=set(masks), refine=fill_refine, spacing_zyx_mm=spacing_zyx_mm,
    )  # fmt: skip
