"""Projection geometry: maximum-intensity projections and linear back-projection.

Every view rotates about the volume's z axis (the slice axis of the display frame),
so a view of a ``(D, H, W)`` volume is a ``(D, S)`` image: one row per slice, one
column per detector position. In-plane coordinates are centred on the slice::

    u = x - (W - 1) / 2,  v = y - (H - 1) / 2          (voxels)
    ray direction  d = ( cos a,  sin a)   in (u, v)
    detector axis  e = (-sin a,  cos a)
    detector position  s = -u sin a + v cos a,  column = s + (S - 1) / 2

The detector and each ray span the slice's diagonal, so no voxel falls outside a
view, whatever the angle. A projection along ``a`` and along ``a + pi`` see the same
rays: angles are taken in ``[0, pi)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "backproject",
    "default_angles",
    "detector_column",
    "detector_size",
    "mip",
]


def default_angles(n_views: int) -> torch.Tensor:
    """``n_views`` evenly spaced angles in ``[0, pi)``, radians, float32, shape ``(P,)``."""
    if n_views < 1:
        raise ValueError(f"need at least one view, got {n_views}")
    return torch.arange(n_views, dtype=torch.float32) * (math.pi / n_views)


def detector_size(height: int, width: int) -> int:
    """Detector columns ``S`` (odd, so that column ``(S - 1) / 2`` is the centre)."""
    n = int(math.ceil(math.hypot(height, width))) + 1
    return n + 1 - n % 2


def detector_column(
    y: torch.Tensor, x: torch.Tensor, angle: float, height: int, width: int
) -> torch.Tensor:
    """Detector column (float) that voxel ``(y, x)`` projects to along ``angle``.

    Parameters
    ----------
    y, x : tensors of one shape
        Voxel indices in the slice (display frame).
    angle : float
        Radians.
    height, width : int
        Slice shape ``(H, W)``.

    Returns
    -------
    Tensor
        Column in ``[0, S - 1]`` of the ``(D, S)`` view, same shape as ``y``.
    """
    u = x - (width - 1) / 2.0
    v = y - (height - 1) / 2.0
    s = -u * math.sin(angle) + v * math.cos(angle)
    return s + (detector_size(height, width) - 1) / 2.0


def _ray_grid(angle: float, height: int, width: int, device=None) -> torch.Tensor:
    """``grid_sample`` grid ``(1, S, T, 2)`` of the ray samples, (x, y) normalised, align_corners."""
    n = detector_size(height, width)
    centred = torch.arange(n, dtype=torch.float32, device=device) - (n - 1) / 2.0
    s = centred[:, None]  # detector position
    t = centred[None, :]  # position along the ray
    cos, sin = math.cos(angle), math.sin(angle)
    x = t * cos - s * sin + (width - 1) / 2.0
    y = t * sin + s * cos + (height - 1) / 2.0
    x_norm = x / max(width - 1, 1) * 2.0 - 1.0
    y_norm = y / max(height - 1, 1) * 2.0 - 1.0
    return torch.stack([x_norm, y_norm], dim=-1)[None]


def mip(volume_zyx: torch.Tensor, angles: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Maximum-intensity projections of a batch of volumes.

    Parameters
    ----------
    volume_zyx : (B, D, H, W) float tensor
        Volumes in the display frame. Outside the volume counts as 0, so intensities
        should be normalised with air at 0 (see :func:`..grid.normalise_ct`).
    angles : P angles, radians

    Returns
    -------
    (B, P, D, S) tensor
        View ``p`` holds, for each slice and detector column, the largest value on the
        ray (bilinear samples one voxel apart).
    """
    if volume_zyx.ndim != 4:
        raise ValueError(f"volume must be (B, D, H, W), got shape {tuple(volume_zyx.shape)}")
    _, _, height, width = volume_zyx.shape
    views = []
    for angle in _as_floats(angles):
        grid = _ray_grid(angle, height, width, volume_zyx.device)
        grid = grid.expand(volume_zyx.shape[0], -1, -1, -1).to(volume_zyx.dtype)
        # slices are channels: one 2D sampling serves every slice
        samples = F.grid_sample(
            volume_zyx, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        views.append(samples.amax(dim=-1))  # (B, D, S)
    return torch.stack(views, dim=1)


def backproject(
    views: torch.Tensor, angles: Sequence[float] | torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Linear back-projection: every voxel takes its ray's value, averaged over views.

    Parameters
    ----------
    views : (B, P, C, D, S) tensor
        ``C`` maps per view on the detector grid of :func:`mip`.
    angles : P angles, radians (the views' own)
    height, width : int
        Slice shape ``(H, W)`` of the volume to fill.

    Returns
    -------
    (B, C, D, H, W) tensor
        Mean over the views of each map, linearly interpolated between detector columns.
        Differentiable in ``views``.
    """
    if views.ndim != 5:
        raise ValueError(f"views must be (B, P, C, D, S), got shape {tuple(views.shape)}")
    angles = _as_floats(angles)
    b, p, c, d, s = views.shape
    if p != len(angles):
        raise ValueError(f"{p} views but {len(angles)} angles")
    if s != detector_size(height, width):
        raise ValueError(f"views have {s} detector columns, a {height}x{width} slice needs "
                         f"{detector_size(height, width)}")  # fmt: skip
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float32, device=views.device),
        torch.arange(width, dtype=torch.float32, device=views.device),
        indexing="ij",
    )
    total = None
    for i, angle in enumerate(angles):
        col = detector_column(yy, xx, angle, height, width).reshape(-1).clamp(0, s - 1)
        low = col.floor().clamp(max=s - 2).long() if s > 1 else col.long()
        frac = (col - low.to(col.dtype)).to(views.dtype)
        flat = views[:, i].reshape(b, c * d, s)
        left = flat.index_select(-1, low)
        right = flat.index_select(-1, (low + 1).clamp(max=s - 1))
        value = left + (right - left) * frac
        total = value if total is None else total + value
    return (total / len(angles)).reshape(b, c, d, height, width)


def _as_floats(angles) -> list[float]:
    if isinstance(angles, torch.Tensor):
        return [float(a) for a in angles.reshape(-1).tolist()]
    return [float(a) for a in angles]
