"""The per-slice 2D U-Net: the baseline the projection network is compared with.

Same U-Net, same grid and intensities as :class:`..network.MipUNet`, applied to
each axial slice of the network grid instead of to projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from napari_medsam.model.mipunet.unet2d import UNet2D, UNetConfig

__all__ = ["SliceUNet", "SliceUNetConfig"]


@dataclass(frozen=True)
class SliceUNetConfig:
    """Shape of a :class:`SliceUNet` (stored in its checkpoint).

    Attributes
    ----------
    base, levels : int
        U-Net width and depth.
    spacing_mm : float
        Isotropic voxel size of the network grid.
    target : str
    slices_per_batch : int
        Slices run at once at inference (bounds memory).
    """

    base: int = 16
    levels: int = 3
    spacing_mm: float = 2.0
    target: str = "bone"
    slices_per_batch: int = 16

    def __post_init__(self) -> None:
        if not self.spacing_mm > 0 or self.slices_per_batch < 1:
            raise ValueError(f"spacing_mm must be > 0 and slices_per_batch >= 1: {self}")


class SliceUNet(nn.Module):
    """A 2D U-Net run slice by slice over a volume.

    Parameters
    ----------
    config : SliceUNetConfig
    """

    def __init__(self, config: SliceUNetConfig = SliceUNetConfig()) -> None:
        super().__init__()
        self.config = config
        self.unet = UNet2D(UNetConfig(1, 1, config.base, config.levels))

    def forward(self, volume_zyx: torch.Tensor) -> torch.Tensor:
        """``(B, D, H, W)`` normalised volumes -> ``(B, D, H, W)`` logits."""
        if volume_zyx.ndim != 4:
            raise ValueError(f"volume must be (B, D, H, W), got shape {tuple(volume_zyx.shape)}")
        b, d, h, w = volume_zyx.shape
        return self.unet(volume_zyx.reshape(b * d, 1, h, w)).reshape(b, d, h, w)

    @torch.no_grad()
    def probability(self, volume_zyx: torch.Tensor) -> torch.Tensor:
        """``sigmoid`` of the logits, ``(B, D, H, W)``; eval mode, slices in batches."""
        was_training = self.training
        self.eval()
        try:
            b, d, h, w = volume_zyx.shape
            flat = volume_zyx.reshape(b * d, 1, h, w)
            step = self.config.slices_per_batch
            out = [torch.sigmoid(self.unet(flat[i : i + step])) for i in range(0, b * d, step)]
            return torch.cat(out).reshape(b, d, h, w)
        finally:
            self.train(was_training)
