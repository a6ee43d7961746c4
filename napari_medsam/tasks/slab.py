"""Slab propagation: segment D neighbouring slices with one model call (SD-Trans).

A Med-SA model with SD-Trans (:class:`napari_medsam.model.medsa.engine.MedSAEngine`
with ``slab_depth > 1``) encodes a slab of consecutive slices together, each
slice's embedding attending to its neighbours. :func:`napari_medsam.tasks.propagate.propagate`
then predicts a slab at a time: every slice of the next slab gets the prompt
built from the last finished slice, the slab goes through
``engine.predict_stack`` once, and the stop rules are applied slice by slice in
propagation order. Engines without ``predict_stack`` / ``slab_depth`` stay on
the per-slice path.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

import numpy as np

from napari_medsam.tasks.segment import Window, slice_key, windowed_slice
from napari_medsam.types import SlicePrediction, SlicePrompt


def engine_slab_depth(engine, requested: int | None = None) -> int:
    """Slices per model call for propagation with ``engine``.

    Parameters
    ----------
    engine : Engine
        Any engine; slabs need ``engine.slab_depth > 1`` and ``engine.predict_stack``.
    requested : int, optional
        None uses the engine's ``slab_depth``; a number caps it (1 = per slice).

    Returns
    -------
    int
        >= 1; 1 means the per-slice path.
    """
    depth = int(getattr(engine, "slab_depth", 1) or 1)
    if depth <= 1 or not callable(getattr(engine, "predict_stack", None)):
        return 1
    if requested is not None:
        if requested < 1:
            raise ValueError(f"slab depth must be >= 1, got {requested}")
        depth = min(depth, int(requested))
    return depth


def next_slab(zs: Sequence[int], start: int, depth: int, locked: Collection[int]) -> list[int]:
    """The slices of the next slab: ``zs[start:start + depth]`` cut before the first locked one.

    ``zs[start]`` itself must not be locked (locked slices are never predicted).
    """
    slab = []
    for z in zs[start : start + depth]:
        if z in locked:
            break
        slab.append(int(z))
    return slab


def predict_slab(
    engine,
    volume_zyx,
    window: Window,
    zs: Sequence[int],
    prompt: SlicePrompt,
    cache_key_prefix: Hashable = None,
) -> list[SlicePrediction]:
    """Predict one object on the slab ``zs`` with one ``engine.predict_stack`` call.

    Parameters
    ----------
    engine : MedSAEngine or compatible
        Has ``predict_stack(images_yx, prompts, cache_key)``.
    volume_zyx : array-like
        (Z, Y, X) image volume in its stored intensities.
    window : IntensityWindow
        Maps a slice to [0, 1] for the model.
    zs : sequence of int
        Consecutive slices in propagation order (increasing or decreasing z).
    prompt : SlicePrompt
        The same prompt for every slice of the slab (from the last finished slice).
    cache_key_prefix : hashable, optional
        Identity of the volume; the slab is cached under (first slice key, last z).
        None disables caching.

    Returns
    -------
    list of SlicePrediction
        One per slice, in the order of ``zs``.
    """
    order = sorted(int(z) for z in zs)  # the model sees the slab in slice order
    if order != list(range(order[0], order[-1] + 1)):
        raise ValueError(f"a slab must be consecutive slices, got {list(zs)}")
    images = [windowed_slice(volume_zyx, z, window) for z in order]
    key = None
    if cache_key_prefix is not None:
        key = ("slab", slice_key(cache_key_prefix, order[0], window), order[-1])
    preds = engine.predict_stack(images, [prompt] * len(order), key)
    by_z = dict(zip(order, preds, strict=True))
    out = []
    for z in zs:
        pred = by_z[int(z)]
        if pred is None:
            raise ValueError(f"{engine.name} returned no prediction for slice {z}")
        if np.shape(pred.mask_yx) != images[0].shape:
            raise ValueError(
                f"{engine.name} returned a mask of shape {np.shape(pred.mask_yx)} "
                f"for a slice of shape {images[0].shape}"
            )
        out.append(pred)
    return out
