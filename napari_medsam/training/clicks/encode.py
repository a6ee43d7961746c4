"""The image encoder used to embed training slices: the app's preprocessing, fast runtime.

Slices are preprocessed exactly as the app's engine does
(:func:`napari_medsam.model.preprocess.preprocess_slices`). The encoder runs on
OpenVINO (bf16 where the CPU has it) when installed, else on torch with bf16
autocast on CPUs that support it, else fp32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_medsam.model.preprocess import preprocess_slices

logger = logging.getLogger(__name__)


def _torch_encoder(engine) -> Callable[[torch.Tensor], np.ndarray]:
    encoder = engine.model.image_encoder.eval()

    @torch.inference_mode()
    def run(batch: torch.Tensor) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=batch.device.type == "cpu"):
            return encoder(batch).float().cpu().numpy()

    return run


def _openvino_encoder(engine) -> Callable[[torch.Tensor], np.ndarray] | None:
    try:
        from napari_medsam.model.backends import make_image_encoder  # the app's fast backend
    except ImportError:
        make_image_encoder = None
    if make_image_encoder is not None:
        fast = make_image_encoder(engine, backend="auto")

        def run_backend(batch: torch.Tensor) -> np.ndarray:
            return np.asarray(fast(batch))

        return run_backend
    try:
        import openvino as ov
    except ImportError:
        return None
    encoder = engine.model.image_encoder.eval()  # weights already loaded: safe to trace
    model = ov.convert_model(encoder, example_input=torch.zeros(1, 3, 256, 256))
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})

    def run(batch: torch.Tensor) -> np.ndarray:
        return np.concatenate([compiled(batch[i : i + 1].numpy())[0] for i in range(len(batch))])

    return run


def training_encoder(engine, backend: str = "auto") -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """list of (H, W) float32 [0, 1] slices -> (B, C, h, w) float32 embeddings.

    Parameters
    ----------
    engine : SamEngine
        Supplies the model, its input spec and device.
    backend : {"auto", "torch"}
        "auto" uses the fast CPU runtime when it is installed.
    """
    run = _openvino_encoder(engine) if backend == "auto" else None
    if run is None:
        run = _torch_encoder(engine)
    logger.info("training encoder: %s", "fast runtime" if backend == "auto" else "torch")

    def encode(images: Sequence[np.ndarray]) -> np.ndarray:
        return run(preprocess_slices(images, engine.spec, engine.device))

    return encode
