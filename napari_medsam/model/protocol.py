"""The engine protocol: what the tasks, the widget and the evaluation call.

Widget and task tests use a fake numpy engine that satisfies this protocol;
the real :class:`napari_medsam.model.sam_engine.SamEngine` wraps a torch model.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from napari_medsam.types import SlicePrediction, SlicePrompt


@runtime_checkable
class Engine(Protocol):
    """Embed once per slice, predict many times.

    Attributes
    ----------
    name : str
        Human-readable model name (e.g. ``"LiteMedSAM"``).
    image_size : int
        Side of the square model input in pixels (256 for LiteMedSAM, 1024 for SAM).
    needs_box : bool, optional
        True for a model trained with boxes only (clicks alone give nothing); read it
        with :func:`needs_box`, which also looks at ``spec.needs_box`` and defaults to
        False for engines that have neither.
    """

    name: str
    image_size: int

    def embed(self, image_yx: np.ndarray, cache_key: Hashable | None = None) -> None:
        """Compute (or fetch from the cache) the embedding of one slice.

        Parameters
        ----------
        image_yx : np.ndarray
            (H, W) float32 slice already windowed to [0, 1].
        cache_key : hashable, optional
            Identity of the slice content (volume id, z, window); None disables caching.
        """

    def predict(
        self, image_yx: np.ndarray, prompt: SlicePrompt, cache_key: Hashable | None = None
    ) -> SlicePrediction:
        """Segment one object on one slice.

        Parameters
        ----------
        image_yx : np.ndarray
            (H, W) float32 slice windowed to [0, 1].
        prompt : SlicePrompt
            Clicks / box (slice pixel frame) and optional previous low-res logits.
        cache_key : hashable, optional
            As in :meth:`embed`; a cached embedding is reused.

        Returns
        -------
        SlicePrediction
            Mask (H, W) bool on the slice grid, (256, 256) low-res logits, score.
        """


def needs_box(engine: Any) -> bool:
    """Whether ``engine``'s model needs a box before clicks do anything.

    The capability flag, not the model's name: ``engine.needs_box`` if the engine has
    it, else its ``spec.needs_box`` (:class:`~napari_medsam.model.configs.InputSpec`),
    else False (a click-capable model). A click-trained Med-SA on the box-only
    LiteMedSAM backbone says False.
    """
    flag = getattr(engine, "needs_box", None)
    if flag is None:
        flag = getattr(getattr(engine, "spec", None), "needs_box", False)
    return bool(flag)
