"""The image encoder used to embed training slices: the app's preprocessing, fast runtime.

Slices are preprocessed exactly as the app's engine does
(:func:`napari_medsam.model.preprocess.preprocess_slices`) and embedded by the app's
backend (:func:`napari_medsam.model.backends.make_image_encoder`: OpenVINO bf16 where
the CPU has it, else torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from napari_medsam.model.backends import make_image_encoder
from napari_medsam.model.preprocess import preprocess_slices


def training_encoder(engine, backend: str = "auto") -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """list of (H, W) float32 [0, 1] slices -> (B, C, h, w) float32 embeddings.

    Parameters
    ----------
    engine : SamEngine
        Supplies the model (weights loaded), its input spec and device.
    backend : {"auto", "torch", "openvino"}
        As for :func:`make_image_encoder`.
    """
    encode = make_image_encoder(engine, backend=backend)

    def run(images: Sequence[np.ndarray]) -> np.ndarray:
        batch = preprocess_slices(images, engine.spec, engine.device)
        return np.asarray(encode(batch.cpu().numpy()), np.float32)

    return run
