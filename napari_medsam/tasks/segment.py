"""Segmentation tasks: plain generators that run on a worker thread.

Numpy only (plus whatever the engine needs); no Qt, no napari. Each task yields
:class:`~napari_medsam.types.Progress` between expensive steps, which is where
a runner may stop a superseded job, and yields results as frozen dataclasses
holding copies (never views of engine buffers or of the volume).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Iterator
from typing import NamedTuple, Protocol

import numpy as np

from napari_medsam.model.protocol import Engine
from napari_medsam.prompts.negatives import with_negatives_from_labels
from napari_medsam.types import Progress, SliceMask, SlicePrompt

logger = logging.getLogger(__name__)


class Window(Protocol):
    """What a task needs from an intensity window (``prompts.intensity.IntensityWindow``)."""

    lo: float
    hi: float

    def apply(self, slice_yx: np.ndarray) -> np.ndarray: ...


class SliceKey(NamedTuple):
    """Cache key of one windowed slice: the volume's identity, the slice and the window.

    A window change gives a different key, so the slice is embedded again.

    Attributes
    ----------
    volume : hashable
        Identity of the volume (the caller's ``cache_key_prefix``).
    z : int
        Slice index along axis 0 of the (Z, Y, X) volume.
    lo, hi : float
        The intensity window the slice was scaled with.
    """

    volume: Hashable
    z: int
    lo: float
    hi: float


def slice_key(cache_key_prefix: Hashable, z: int, window: Window) -> SliceKey:
    """Build the embedding cache key of slice ``z`` seen through ``window``."""
    return SliceKey(cache_key_prefix, int(z), float(window.lo), float(window.hi))


def windowed_slice(volume_zyx, z: int, window: Window) -> np.ndarray:
    """Return slice ``z`` of a (Z, Y, X) volume as (Y, X) float32 in [0, 1].

    Raises
    ------
    IndexError
        If ``z`` is outside the volume.
    """
    n_z = volume_zyx.shape[0]
    if not 0 <= z < n_z:
        raise IndexError(f"slice {z} is outside the volume (0..{n_z - 1})")
    # np.asarray also materialises lazy (dask / zarr) slices on this thread
    image_yx = window.apply(np.asarray(volume_zyx[z]))
    return np.ascontiguousarray(image_yx, dtype=np.float32)


def segment_slice(
    engine: Engine,
    volume_zyx,
    window: Window,
    z: int,
    prompt: SlicePrompt,
    label: int,
    job_id: int,
    cache_key_prefix: Hashable = None,
    negatives_from_yx: np.ndarray | None = None,
) -> Iterator[Progress | SliceMask]:
    """Segment one object on one slice.

    Parameters
    ----------
    engine : Engine
        The model (embed once, predict many).
    volume_zyx : array-like
        (Z, Y, X) image volume in its stored intensities.
    window : IntensityWindow
        Maps the slice to [0, 1] for the model (the image layer's contrast limits).
    z : int
        Slice index along axis 0.
    prompt : SlicePrompt
        Clicks and box in the slice's (row, col) pixel frame.
    label : int
        Label id the mask will be painted with.
    job_id : int
        Request id, copied into every yielded item.
    cache_key_prefix : hashable, optional
        Identity of the volume; None disables the embedding cache.
    negatives_from_yx : np.ndarray, optional
        (Y, X) integer labels of slice ``z`` as they were when the job was made
        (a copy, never a live layer). When given, the other objects in the
        prompt's box (or near its clicks) add negative clicks, see
        :func:`napari_medsam.prompts.negatives.with_negatives_from_labels`.

    Yields
    ------
    Progress
        Before embedding and before predicting.
    SliceMask
        Last item: (Y, X) bool mask of slice ``z`` (a copy) with the low-res logits.

    Raises
    ------
    ValueError
        An empty prompt, or a slice that is blank in the window (nothing to segment).
    """
    if prompt.is_empty:
        raise ValueError("the prompt has neither clicks nor a box")
    yield Progress(job_id, 0, 2, f"embedding slice {z}")
    image_yx = windowed_slice(volume_zyx, z, window)
    if float(np.ptp(image_yx)) < 1e-6:  # a model still draws a plausible mask on nothing
        raise ValueError(
            f"slice {z} is blank in the intensity window [{window.lo:g}, {window.hi:g}] "
            "(all NaN, or one flat value): nothing to segment there"
        )
    if negatives_from_yx is not None and np.shape(negatives_from_yx) != image_yx.shape:
        raise ValueError(
            f"labels of shape {np.shape(negatives_from_yx)} for a slice of shape {image_yx.shape}"
        )
    key = None if cache_key_prefix is None else slice_key(cache_key_prefix, z, window)
    engine.embed(image_yx, key)
    yield Progress(job_id, 1, 2, f"segmenting slice {z}")
    if negatives_from_yx is not None:
        prompt = with_negatives_from_labels(prompt, negatives_from_yx, label)
    pred = engine.predict(image_yx, prompt, key)
    mask_yx = np.array(pred.mask_yx, dtype=bool, copy=True)
    if mask_yx.shape != image_yx.shape:
        raise ValueError(
            f"{engine.name} returned a mask of shape {mask_yx.shape} "
            f"for a slice of shape {image_yx.shape}"
        )
    logits = None if pred.logits_lowres is None else np.array(pred.logits_lowres, np.float32)
    yield SliceMask(
        job_id=job_id,
        z=int(z),
        label=int(label),
        mask_yx=mask_yx,
        score=float(pred.score),
        logits_lowres=logits,
    )


def embed_slices(
    engine: Engine,
    volume_zyx,
    window: Window,
    zs: Iterable[int],
    job_id: int,
    cache_key_prefix: Hashable = None,
) -> Iterator[Progress]:
    """Precompute the embeddings of several slices, one Progress per slice.

    Parameters
    ----------
    engine : Engine
    volume_zyx : array-like
        (Z, Y, X) image volume.
    window : IntensityWindow
    zs : iterable of int
        Slice indices along axis 0; those outside the volume are skipped.
    job_id : int
    cache_key_prefix : hashable, optional
        Identity of the volume; the same prefix as the later clicks use, so
        that they hit the cache.

    Yields
    ------
    Progress
        ``done`` slices of ``total`` embedded; the first has ``done == 0``.
    """
    n_z = volume_zyx.shape[0]
    zs = [int(z) for z in zs if 0 <= int(z) < n_z]
    total = len(zs)
    yield Progress(job_id, 0, total, f"embedding 0/{total}")
    for i, z in enumerate(zs, start=1):
        image_yx = windowed_slice(volume_zyx, z, window)
        key = None if cache_key_prefix is None else slice_key(cache_key_prefix, z, window)
        engine.embed(image_yx, key)
        yield Progress(job_id, i, total, f"embedding {i}/{total}")
