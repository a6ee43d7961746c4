"""The sampling grid: from a scan's voxels to the network's isotropic grid and back.

The network grid covers exactly the scan's box (the outer faces of its first and
last voxels) with ``round(n * spacing / h)`` cells per axis, so its cells are
``h`` mm up to rounding. Both directions are trilinear resamplings of the same box
(``align_corners=False``): a structure keeps its place to a fraction of a voxel,
whatever the spacing. Labels come back on the scan's own grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["NetworkGrid", "normalise_ct", "network_grid", "to_network_grid", "to_scan_grid"]

#: HU mapped to 0 (air and fat below it are all 0: the projections' background).
HU_LOW = -200.0
#: HU span mapped to 1 (soft tissue ~0.2, contrast ~0.4, cortical bone ~1).
HU_SPAN = 1200.0
HU_CLIP = 1.5


def normalise_ct(hu: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """CT in HU -> ``clip((hu + 200) / 1200, 0, 1.5)``, float32; air is 0."""
    if isinstance(hu, torch.Tensor):
        return ((hu.float() - HU_LOW) / HU_SPAN).clamp(0.0, HU_CLIP)
    return np.clip((np.asarray(hu, np.float32) - HU_LOW) / HU_SPAN, 0.0, HU_CLIP).astype(np.float32)


@dataclass(frozen=True)
class NetworkGrid:
    """A scan grid and the network grid over the same box.

    Attributes
    ----------
    scan_shape_zyx : tuple of 3 int
    scan_spacing_zyx_mm : tuple of 3 float
    shape_zyx : tuple of 3 int
        Network grid shape.
    spacing_zyx_mm : tuple of 3 float
        Network cell size (``h`` up to rounding).
    """

    scan_shape_zyx: tuple[int, int, int]
    scan_spacing_zyx_mm: tuple[float, float, float]
    shape_zyx: tuple[int, int, int]
    spacing_zyx_mm: tuple[float, float, float]


def network_grid(
    scan_shape_zyx: Sequence[int], scan_spacing_zyx_mm: Sequence[float], spacing_mm: float
) -> NetworkGrid:
    """The network grid of cell ``spacing_mm`` over a scan's box.

    Raises
    ------
    ValueError
        A non-3D shape, a non-positive or non-finite spacing.
    """
    shape = tuple(int(n) for n in scan_shape_zyx)
    spacing = tuple(float(v) for v in scan_spacing_zyx_mm)
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 1:
        raise ValueError(f"need a 3D scan grid, got shape {shape} and spacing {spacing}")
    if not all(np.isfinite(v) and v > 0 for v in spacing):
        raise ValueError(f"voxel spacing must be finite and > 0 mm, got {spacing}")
    cells = tuple(
        max(1, int(round(n * v / spacing_mm))) for n, v in zip(shape, spacing, strict=True)
    )
    size = tuple(n * v / m for n, v, m in zip(shape, spacing, cells, strict=True))
    return NetworkGrid(shape, spacing, cells, size)


def _resample(volume: torch.Tensor, shape: Sequence[int], mode: str) -> torch.Tensor:
    if tuple(volume.shape[-3:]) == tuple(shape):
        return volume
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    return F.interpolate(volume, size=tuple(shape), mode=mode, **kwargs)


def to_network_grid(
    volume_zyx: np.ndarray | torch.Tensor, grid: NetworkGrid, mode: str = "trilinear"
) -> torch.Tensor:
    """Resample a ``(D, H, W)`` scan-grid volume onto the network grid (float32 tensor).

    ``mode="nearest"`` is for labels; ``"area"`` for masks whose fraction matters.
    """
    tensor = torch.as_tensor(
        np.ascontiguousarray(volume_zyx) if isinstance(volume_zyx, np.ndarray) else volume_zyx
    )
    if tuple(tensor.shape) != grid.scan_shape_zyx:
        raise ValueError(
            f"volume shape {tuple(tensor.shape)} is not the grid's {grid.scan_shape_zyx}"
        )
    return _resample(tensor.float()[None, None], grid.shape_zyx, mode)[0, 0]


def to_scan_grid(values_zyx: torch.Tensor, grid: NetworkGrid, slab: int = 32) -> np.ndarray:
    """Resample network-grid values (probabilities) back onto the scan grid.

    Parameters
    ----------
    values_zyx : (d, h, w) tensor on the network grid
    grid : NetworkGrid
    slab : int
        Scan slices resampled at a time (bounds the memory of large scans).

    Returns
    -------
    (Z, Y, X) float32 array on the scan grid.
    """
    if tuple(values_zyx.shape) != grid.shape_zyx:
        raise ValueError(
            f"values shape {tuple(values_zyx.shape)} is not the grid's {grid.shape_zyx}"
        )
    z_scan, y_scan, x_scan = grid.scan_shape_zyx
    d = grid.shape_zyx[0]
    values = values_zyx.float()
    out = np.empty(grid.scan_shape_zyx, np.float32)
    for start in range(0, z_scan, slab):
        stop = min(z_scan, start + slab)
        # centres of scan slices in network-slice units (align_corners=False)
        centres = (np.arange(start, stop) + 0.5) * d / z_scan - 0.5
        low = np.clip(np.floor(centres).astype(int), 0, d - 1)
        high = np.clip(low + 1, 0, d - 1)
        frac = torch.as_tensor(np.clip(centres - low, 0.0, 1.0), dtype=torch.float32)[:, None, None]
        first, last = int(low.min()), int(high.max())
        planes = values[first : last + 1][None]
        if planes.shape[-2:] != (y_scan, x_scan):
            planes = F.interpolate(
                planes, size=(y_scan, x_scan), mode="bilinear", align_corners=False
            )
        planes = planes[0]
        a, b = planes[low - first], planes[high - first]
        out[start:stop] = (a + (b - a) * frac).numpy()
    return out
