"""Inference on a whole scan: scan grid -> network grid -> model -> scan grid.

Both network kinds (:class:`..network.MipUNet`, :class:`..slice_net.SliceUNet`)
run through :func:`segment_volume`, so their seconds and Dice compare like for like.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from napari_medsam.model.mipunet.grid import (
    NetworkGrid,
    network_grid,
    normalise_ct,
    to_network_grid,
    to_scan_grid,
)

__all__ = ["AutoResult", "check_ct_volume", "segment_volume"]


@dataclass(frozen=True)
class AutoResult:
    """A segmentation on the scan's own grid.

    Attributes
    ----------
    probability_zyx : (Z, Y, X) float32 array
        Target probability per scan voxel.
    mask_zyx : (Z, Y, X) bool array
        ``probability_zyx >= threshold``.
    seconds : float
        Wall time of resampling, network and resampling back.
    grid : NetworkGrid
    """

    probability_zyx: np.ndarray
    mask_zyx: np.ndarray
    seconds: float
    grid: NetworkGrid


def check_ct_volume(data_zyx: np.ndarray) -> None:
    """Refuse what cannot be CT in Hounsfield units, with one line that says why.

    Raises
    ------
    ValueError
        Not 3D, empty, non-finite values, or no value below 0 (CT in HU always holds
        air or fat; an 8-bit or MRI image does not).
    """
    data = np.asarray(data_zyx)
    if data.ndim != 3 or data.size == 0:
        raise ValueError(f"need a 3D scan, got an array of shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
        raise ValueError(f"need a numeric scan, got dtype {data.dtype}")
    low, high = float(np.min(data)), float(np.max(data))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("the scan holds NaN or infinite values")
    if low >= 0:
        raise ValueError(
            f"the scan's values run {low:g}..{high:g} with nothing below 0: this engine "
            "expects CT in Hounsfield units (air -1000, bone > 200), not MRI or an 8-bit image"
        )


@torch.no_grad()
def segment_volume(
    model: nn.Module,
    data_zyx: np.ndarray,
    spacing_zyx_mm: Sequence[float],
    threshold: float = 0.5,
) -> AutoResult:
    """Segment one CT scan with a MIP U-Net or a slice U-Net.

    Parameters
    ----------
    model : MipUNet or SliceUNet
        Its ``config.spacing_mm`` sets the network grid.
    data_zyx : (Z, Y, X) array
        CT in HU, display frame.
    spacing_zyx_mm : 3 floats
        Voxel size of ``data_zyx``.
    threshold : float
        Probability at and above which a voxel is the target.

    Returns
    -------
    AutoResult

    Raises
    ------
    ValueError
        Input that is not CT in HU (:func:`check_ct_volume`), a bad spacing or threshold.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    check_ct_volume(data_zyx)
    start = time.perf_counter()
    grid = network_grid(np.shape(data_zyx), spacing_zyx_mm, model.config.spacing_mm)
    volume = normalise_ct(to_network_grid(np.asarray(data_zyx, np.float32), grid))
    probability = model.probability(volume[None])[0]
    prob_zyx = to_scan_grid(probability, grid)
    seconds = time.perf_counter() - start
    return AutoResult(prob_zyx, prob_zyx >= threshold, seconds, grid)
