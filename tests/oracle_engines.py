"""Numpy engines with known answers, for tests and for checking the protocol itself.

They satisfy :class:`napari_medsam.model.protocol.Engine` without torch:
:class:`OracleEngine` returns the truth, :class:`EmptyEngine` returns nothing.
A protocol that does not give NoC = 1 with the oracle, or the cap with the
empty engine, is broken.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from napari_medsam.types import SlicePrediction, SlicePrompt

LOWRES = 256


class EmptyEngine:
    """Predicts an empty mask whatever the prompt; counts its calls."""

    name = "empty"
    image_size = LOWRES

    def __init__(self) -> None:
        self.embed_calls = 0
        self.predict_calls = 0
        self.prompts: list[SlicePrompt] = []

    def embed(self, image_yx: np.ndarray, cache_key: Hashable | None = None) -> None:
        self.embed_calls += 1

    def embed_batch(self, images_yx, cache_keys) -> None:
        for image_yx, key in zip(images_yx, cache_keys, strict=True):
            self.embed(image_yx, key)

    def _mask(self, image_yx: np.ndarray, prompt: SlicePrompt, cache_key) -> np.ndarray:
        return np.zeros(np.shape(image_yx), bool)

    def predict(
        self, image_yx: np.ndarray, prompt: SlicePrompt, cache_key: Hashable | None = None
    ) -> SlicePrediction:
        self.predict_calls += 1
        self.prompts.append(prompt)
        mask = self._mask(image_yx, prompt, cache_key)
        logits = np.where(mask.any(), 1.0, -1.0) * np.ones((LOWRES, LOWRES), np.float32)
        return SlicePrediction(mask_yx=mask, logits_lowres=logits.astype(np.float32), score=1.0)


class OracleEngine(EmptyEngine):
    """Returns the true mask of the object the prompt points at.

    The object is the label under the first positive click, or the most common
    non-zero label inside the box. The slice index is read from the cache key,
    whose second item is ``z`` (as :func:`~napari_medsam.evaluation.runner.evaluate_volume`
    builds it).

    Parameters
    ----------
    labels_zyx : np.ndarray
        (Z, Y, X) integer truth.
    """

    name = "oracle"

    def __init__(self, labels_zyx: np.ndarray) -> None:
        super().__init__()
        self.labels_zyx = np.asarray(labels_zyx)

    def _mask(self, image_yx: np.ndarray, prompt: SlicePrompt, cache_key) -> np.ndarray:
        slice_yx = self.labels_zyx[cache_key[1]]
        positive = np.asarray(prompt.point_labels) == 1
        if positive.any():
            y, x = np.asarray(prompt.points_yx)[positive][0].astype(int)
            label = slice_yx[y, x]
        elif prompt.box_yxyx is not None:
            y0, x0, y1, x1 = np.asarray(prompt.box_yxyx).astype(int)
            inside = slice_yx[y0 : y1 + 1, x0 : x1 + 1]
            values, counts = np.unique(inside[inside != 0], return_counts=True)
            label = values[np.argmax(counts)] if len(values) else 0
        else:
            label = 0
        if label == 0:
            return np.zeros(slice_yx.shape, bool)
        return slice_yx == label
