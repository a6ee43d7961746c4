"""What an annotation session asks the model to do, as frozen data, and the one runner.

:class:`~napari_medsam.session.annotation.AnnotationSession` turns a user's prompt
or a Propagate / Re-propagate / Fill into one of these requests; the app runs it on
its worker (:func:`napari_medsam.tasks.jobs.request_job`), ``eval --protocol 3d``
runs it inline. Both call :func:`run_request`, so both run the same tasks with the
same arguments. Every array in a request is a copy made when it was built, never a
view of a live layer. Numpy only (plus the engine the caller hands in).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from napari_medsam.tasks.policy import DEFAULT_POLICY, RepropagationPolicy
from napari_medsam.tasks.propagate import propagate
from napari_medsam.tasks.propagate_options import DEFAULT_OPTIONS, PropagationOptions
from napari_medsam.tasks.repropagate import fill_object, repropagate
from napari_medsam.tasks.segment import segment_slice
from napari_medsam.types import DirectionEnd, Progress, SliceMask, SlicePrompt


@dataclass(frozen=True)
class SegmentRequest:
    """Segment object ``label`` on slice ``z`` from ``prompt`` (a user's click or box).

    Attributes
    ----------
    label, z : int
    prompt : SlicePrompt
        The slice's clicks and box, with the object's previous low-res logits there.
    negatives_from_yx : np.ndarray or None
        (Y, X) labels of the slice (a copy): other objects become negative clicks.
    """

    label: int
    z: int
    prompt: SlicePrompt
    negatives_from_yx: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PropagateRequest:
    """Propagate object ``label`` from its mask on ``start_z`` through the volume."""

    label: int
    start_z: int
    seed_mask_yx: np.ndarray = field(repr=False)
    options: PropagationOptions = DEFAULT_OPTIONS


@dataclass(frozen=True)
class RepropagateRequest:
    """Spread the corrections of ``changed_zs`` as ``policy`` plans it.

    Attributes
    ----------
    corrected_masks : mapping of int to np.ndarray
        ``z -> (Y, X) bool`` on every corrected slice of the object (copies).
    seed_scores : mapping of int to float
        Predicted IoU of the corrected slices the model segmented.
    """

    label: int
    changed_zs: tuple[int, ...]
    corrected_masks: Mapping[int, np.ndarray] = field(repr=False)
    policy: RepropagationPolicy = DEFAULT_POLICY
    options: PropagationOptions = DEFAULT_OPTIONS
    seed_scores: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FillRequest:
    """Fill every gap between the object's corrected slices (they are kept)."""

    label: int
    corrected_masks: Mapping[int, np.ndarray] = field(repr=False)
    fill_refine: str = DEFAULT_POLICY.fill_refine
    spacing_zyx_mm: tuple[float, float, float] | None = None


Request = SegmentRequest | PropagateRequest | RepropagateRequest | FillRequest


def request_task(holder, volume_zyx, window, request: Request, cache_key_prefix: Hashable = None):
    """``task() -> generator`` for the app's worker: :func:`run_request` on the holder's engine.

    The engine is fetched when the task runs (the first job loads the bundled model,
    announced by a ``Progress`` with ``total == 0``), as every job of
    :mod:`napari_medsam.tasks.jobs` does.
    """

    def task():
        if holder.engine is None:
            yield Progress(0, 0, "loading LiteMedSAM")
        yield from run_request(holder.get(), volume_zyx, window, request, cache_key_prefix)

    return task


def run_request(
    engine, volume_zyx, window, request: Request, cache_key_prefix: Hashable = None
) -> Iterator[Progress | SliceMask | DirectionEnd]:
    """The task generator of ``request`` (what the worker runs, or a benchmark inline).

    Parameters
    ----------
    engine : Engine
    volume_zyx : array-like
        (Z, Y, X) image volume.
    window : IntensityWindow
    request : SegmentRequest, PropagateRequest, RepropagateRequest or FillRequest
    cache_key_prefix : hashable, optional
        Identity of the volume for the embedding cache.
    """
    if isinstance(request, SegmentRequest):
        return segment_slice(
            engine, volume_zyx, window, request.z, request.prompt, request.label,
            cache_key_prefix, request.negatives_from_yx,
        )  # fmt: skip
    if isinstance(request, PropagateRequest):
        return propagate(
            engine, volume_zyx, window, request.start_z, request.seed_mask_yx, request.label,
            cache_key_prefix, request.options,
        )  # fmt: skip
    if isinstance(request, RepropagateRequest):
        return repropagate(
            engine, volume_zyx, window, request.changed_zs, request.corrected_masks,
            request.label, cache_key_prefix, request.policy, request.options,
            request.seed_scores,
        )  # fmt: skip
    if isinstance(request, FillRequest):
        return fill_object(
            engine, volume_zyx, window, request.corrected_masks, request.label,
            cache_key_prefix, request.fill_refine, request.spacing_zyx_mm,
        )  # fmt: skip
    raise TypeError(f"not a request: {type(request).__name__}")
