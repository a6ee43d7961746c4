"""The model input: a windowed [0, 1] slice made into a padded square tensor.

One function, :func:`preprocess_slices`, used by the engine and the evaluation,
so that both feed the model exactly the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_medsam.model.configs import InputSpec
from napari_medsam.prompts.geometry import resized_shape


def preprocess_slices(
    images_yx: Sequence[np.ndarray], spec: InputSpec, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Turn windowed slices into the model's batched input.

    Each slice is resized (``spec.resize``: longest side to ``spec.side``, or both
    axes to ``spec.side``; bilinear with
    antialiasing, which averages like the reference's ``cv2.INTER_AREA`` when
    shrinking), repeated to 3 channels, scaled by ``spec.scale``, normalised by
    ``spec.pixel_mean`` / ``pixel_std`` when given (SAM), and zero-padded at the
    bottom and right to ``side`` x ``side`` (after normalisation, as SAM does).

    Parameters
    ----------
    images_yx : sequence of np.ndarray
        (H_i, W_i) float slices already windowed to [0, 1]; shapes may differ.
    spec : InputSpec
        The model's input convention.
    device : torch.device or str
        Where the returned tensor lives.

    Returns
    -------
    torch.Tensor
        (B, 3, side, side) float32.
    """
    side = spec.side
    out = torch.zeros((len(images_yx), 3, side, side), dtype=torch.float32, device=device)
    mean = std = None
    if spec.pixel_mean is not None and spec.pixel_std is not None:
        mean = torch.tensor(spec.pixel_mean, dtype=torch.float32, device=device).view(3, 1, 1)
        std = torch.tensor(spec.pixel_std, dtype=torch.float32, device=device).view(3, 1, 1)
    for i, image_yx in enumerate(images_yx):
        image = np.asarray(image_yx, dtype=np.float32)
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D (H, W) slice, got shape {image.shape}")
        new_h, new_w = resized_shape(image.shape, side, spec.resize)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device)[None, None]
        if (new_h, new_w) != image.shape:
            tensor = F.interpolate(
                tensor, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
            )
        tensor = tensor[0].expand(3, new_h, new_w) * spec.scale
        if mean is not None:
            tensor = (tensor - mean) / std
        out[i, :, :new_h, :new_w] = tensor
    return out
