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
from napari_medsam.types import Progress, SliceMask, SlicePrediction, SlicePrompt

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


class EmbeddedSlice(NamedTuple):
    """A windowed slice whose embedding the engine holds (under ``key``).

    Attributes
    ----------
    z : int
        Slice index along axis 0 of the (Z, Y, X) volume.
    image_yx : np.ndarray
        (Y, X) float32 in [0, 1], the slice as the model sees it.
    key : SliceKey or None
        The engine's cache key (None: no cache).
    """

    z: int
    image_yx: np.ndarray
    key: SliceKey | None


def embed_slice(
    engine: Engine, volume_zyx, window: Window, z: int, cache_key_prefix: Hashable = None
) -> EmbeddedSlice:
    """Window slice ``z`` and have the engine embed it (a cache hit costs nothing).

    Parameters
    ----------
    engine : Engine
    volume_zyx : array-like
        (Z, Y, X) image volume in its stored intensities.
    window : IntensityWindow
    z : int
        Slice index along axis 0.
    cache_key_prefix : hashable, optional
        Identity of the volume; None disables the embedding cache.
    """
    image_yx = windowed_slice(volume_zyx, z, window)
    key = None if cache_key_prefix is None else slice_key(cache_key_prefix, z, window)
    engine.embed(image_yx, key)
    return EmbeddedSlice(int(z), image_yx, key)


def predict_slice(
    engine: Engine,
    embedded: EmbeddedSlice,
    prompt: SlicePrompt,
    label: int = 1,
    negatives_from_yx: np.ndarray | None = None,
) -> SlicePrediction:
    """The one slice prediction of the app, the CLI, propagation, fill and ``eval --protocol 3d``.

    Parameters
    ----------
    engine : Engine
    embedded : EmbeddedSlice
        From :func:`embed_slice`.
    prompt : SlicePrompt
        Clicks, box and mask input in the slice's (row, col) pixel frame.
    label : int
        The object's id (its own voxels in ``negatives_from_yx`` are not negatives).
    negatives_from_yx : np.ndarray, optional
        (Y, X) integer labels of the slice, a copy: the other objects in the
        prompt's box (or near its clicks) add negative clicks, see
        :func:`napari_medsam.prompts.negatives.with_negatives_from_labels`.

    Returns
    -------
    SlicePrediction
        (Y, X) bool mask, low-res logits (float32, or None) and score, all copies.

    Raises
    ------
    ValueError
        Labels or a returned mask whose shape is not the slice's.
    """
    image_yx = embedded.image_yx
    if negatives_from_yx is not None:
        if np.shape(negatives_from_yx) != image_yx.shape:
            raise ValueError(
                f"labels of shape {np.shape(negatives_from_yx)} for a slice of shape "
                f"{image_yx.shape}"
            )
        prompt = with_negatives_from_labels(prompt, negatives_from_yx, label)
    pred = engine.predict(image_yx, prompt, embedded.key)
    mask_yx = np.array(pred.mask_yx, dtype=bool, copy=True)
    if mask_yx.shape != image_yx.shape:
        raise ValueError(
            f"{engine.name} returned a mask of shape {mask_yx.shape} "
            f"for a slice of shape {image_yx.shape}"
        )
    logits = None if pred.logits_lowres is None else np.array(pred.logits_lowres, np.float32)
    return SlicePrediction(mask_yx, logits, float(pred.score))


def segment_slice(
    engine: Engine,
    volume_zyx,
    window: Window,
    z: int,
    prompt: SlicePrompt,
    label: int,
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
    yield Progress(0, 2, f"embedding slice {z}")
    embedded = embed_slice(engine, volume_zyx, window, z, cache_key_prefix)
    if float(np.ptp(embedded.image_yx)) < 1e-6:  # a model still draws a plausible mask on nothing
        raise ValueError(
            f"slice {z} is blank in the intensity window [{window.lo:g}, {window.hi:g}] "
            "(all NaN, or one flat value): nothing to segment there"
        )
    yield Progress(1, 2, f"segmenting slice {z}")
    pred = predict_slice(engine, embedded, prompt, label, negatives_from_yx)
    yield SliceMask(
        z=int(z),
        label=int(label),
        mask_yx=pred.mask_yx,
        score=pred.score,
        logits_lowres=pred.logits_lowres,
    )


def embed_slices(
    engine: Engine,
    volume_zyx,
    window: Window,
    zs: Iterable[int],
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
    yield Progress(0, total, f"embedding 0/{total}")
    for i, z in enumerate(zs, start=1):
        embed_slice(engine, volume_zyx, window, z, cache_key_prefix)
        yield Progress(i, total, f"embedding {i}/{total}")
