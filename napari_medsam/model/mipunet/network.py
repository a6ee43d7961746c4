"""The projection-based 2.5D U-Net (after Angermann et al.): M, U, F, R, T.

- **M** maximum-intensity projections of the volume along ``P`` directions about z;
- **U** one shared 2D U-Net per projection, ``C`` maps each (map 0 is trained to be
  the view's own mask, the projection of the 3D target);
- **F** a learnable filtration: a depthwise 1D convolution along the detector axis,
  started as the identity (the learnable counterpart of filtered back-projection);
- **R** linear back-projection along the same directions, averaged, and a learnable
  mix of the ``C`` maps into one logit volume;
- **T** the fine-tuning operator: average pooling, a learnable normalisation and a
  sigmoid (:meth:`MipUNet.probability`).

One deliberate addition to the paper's T: with ``intensity_gate`` the normalisation
also sees each voxel's own (normalised) intensity and its product with the pooled
back-projection. Back-projection alone only knows that a voxel lies on rays that
cross the target; the voxel's own intensity says where along the ray the bright
structure is. The gate starts at zero, so without training T is the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from napari_medsam.model.mipunet.geometry import backproject, default_angles, mip
from napari_medsam.model.mipunet.unet2d import UNet2D, UNetConfig

__all__ = ["MipOutput", "MipUNet", "MipUNetConfig"]


@dataclass(frozen=True)
class MipUNetConfig:
    """Shape of a :class:`MipUNet` (stored in its checkpoint).

    Attributes
    ----------
    n_views : int
        Projection directions used at inference, evenly spaced in ``[0, pi)``.
    features : int
        Maps per view out of U (``C``).
    base, levels : int
        U's width and depth (see :class:`UNetConfig`).
    filter_size : int
        Taps of F along the detector (odd).
    pool : int
        T's average-pooling window, voxels (odd).
    intensity_gate : bool
        T also sees the voxel's own intensity (see the module docstring).
    spacing_mm : float
        Isotropic voxel size of the grid the network works on.
    target : str
        Name of the structure it segments (``"bone"``).
    """

    n_views: int = 8
    features: int = 4
    base: int = 16
    levels: int = 3
    filter_size: int = 9
    pool: int = 3
    intensity_gate: bool = True
    spacing_mm: float = 2.0
    target: str = "bone"

    def __post_init__(self) -> None:
        if self.n_views < 1 or self.features < 1:
            raise ValueError(f"n_views and features must be >= 1: {self}")
        if self.filter_size % 2 != 1 or self.pool % 2 != 1:
            raise ValueError(f"filter_size and pool must be odd: {self}")
        if not self.spacing_mm > 0:
            raise ValueError(f"spacing_mm must be > 0: {self}")


@dataclass(frozen=True)
class MipOutput:
    """What one forward pass gives.

    Attributes
    ----------
    logits_zyx : (B, D, H, W) tensor
        T's logit per voxel (``sigmoid`` gives the probability).
    view_logits : (B, P, D, S) tensor
        Map 0 of U for each view: the logit of the view's own (projected) mask.
    angles : (P,) tensor
        The views' directions, radians.
    """

    logits_zyx: torch.Tensor
    view_logits: torch.Tensor
    angles: torch.Tensor


class MipUNet(nn.Module):
    """M, U, F, R and T in one module.

    Parameters
    ----------
    config : MipUNetConfig
    """

    def __init__(self, config: MipUNetConfig = MipUNetConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.features
        self.unet = UNet2D(UNetConfig(1, c, config.base, config.levels))
        self.filtration = nn.Conv1d(c, c, config.filter_size, padding=config.filter_size // 2,
                                    groups=c, bias=False)  # fmt: skip
        self.reconstruction = nn.Conv3d(c, 1, 1)
        self.tune = nn.Conv3d(3 if config.intensity_gate else 1, 1, 1)
        with torch.no_grad():  # F = identity, R = map 0, T = sigmoid(pool(R))
            self.filtration.weight.zero_()
            self.filtration.weight[:, 0, config.filter_size // 2] = 1.0
            self.reconstruction.weight.zero_()
            self.reconstruction.weight[0, 0] = 1.0
            self.reconstruction.bias.zero_()
            self.tune.weight.zero_()
            self.tune.weight[0, 0] = 1.0
            self.tune.bias.zero_()

    def parts(self) -> dict[str, nn.Module]:
        """The operators by the paper's letters: ``{"U", "F", "R", "T"}``."""
        return {"U": self.unet, "F": self.filtration, "R": self.reconstruction, "T": self.tune}

    def forward(self, volume_zyx: torch.Tensor, angles: torch.Tensor | None = None) -> MipOutput:
        """Segment a batch of volumes on the network's grid.

        Parameters
        ----------
        volume_zyx : (B, D, H, W) float tensor
            Normalised intensities (air 0; :func:`..grid.normalise_ct`), display frame,
            isotropic ``config.spacing_mm``.
        angles : (P,) tensor, optional
            Directions, radians; default ``config.n_views`` evenly spaced.

        Returns
        -------
        MipOutput
        """
        if volume_zyx.ndim != 4:
            raise ValueError(f"volume must be (B, D, H, W), got shape {tuple(volume_zyx.shape)}")
        if angles is None:
            angles = default_angles(self.config.n_views)
        b, d, h, w = volume_zyx.shape
        views = mip(volume_zyx, angles)  # (B, P, D, S)
        p, s = views.shape[1], views.shape[-1]
        maps = self.unet(views.reshape(b * p, 1, d, s))  # (BP, C, D, S)
        c = maps.shape[1]
        rows = maps.permute(0, 2, 1, 3).reshape(b * p * d, c, s)
        rows = (
            self.filtration(rows).reshape(b, p, d, c, s).permute(0, 1, 3, 2, 4)
        )  # (B, P, C, D, S)
        volume_maps = backproject(rows, angles, h, w)  # (B, C, D, H, W)
        recon = self.reconstruction(volume_maps)  # (B, 1, D, H, W)
        logits = self._tune(recon, volume_zyx[:, None])
        view_logits = maps[:, 0].reshape(b, p, d, s)
        return MipOutput(logits[:, 0], view_logits, torch.as_tensor(angles, dtype=torch.float32))

    def _tune(self, recon: torch.Tensor, intensity: torch.Tensor) -> torch.Tensor:
        k = self.config.pool
        pooled = (
            F.avg_pool3d(recon, k, stride=1, padding=k // 2, count_include_pad=False)
            if k > 1
            else recon
        )
        if self.config.intensity_gate:
            pooled = torch.cat([pooled, intensity, pooled * intensity], dim=1)
        return self.tune(pooled)

    @torch.no_grad()
    def probability(
        self, volume_zyx: torch.Tensor, angles: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``sigmoid`` of T's logits, ``(B, D, H, W)`` in ``[0, 1]``; eval mode, no gradient."""
        was_training = self.training
        self.eval()
        try:
            return torch.sigmoid(self(volume_zyx, angles).logits_zyx)
        finally:
            self.train(was_training)
