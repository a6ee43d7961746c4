"""Random training crops of bone-labelled volumes on the network grid.

A crop is a box of the network grid (clipped to the volume), centred on a bone
cell with probability ``bone_bias``; flipped left-right at random; its intensities
scaled by a factor near 1. Projections of a crop are valid training views too:
they are the views of a scan with a smaller field of view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_medsam.training.mipunet.data import GridVolume

__all__ = ["CropSampler"]


class CropSampler:
    """Draws ``(image, target)`` crops from a set of volumes.

    Parameters
    ----------
    volumes : sequence of GridVolume
    crop_zyx : 3 ints
        Largest crop, network cells.
    seed : int
    bone_bias : float
        Probability that a crop is centred on a bone cell.
    """

    def __init__(self, volumes: Sequence[GridVolume], crop_zyx: Sequence[int], seed: int = 0,
                 bone_bias: float = 0.7) -> None:  # fmt: skip
        if not volumes:
            raise ValueError("no training volumes")
        if len(crop_zyx) != 3 or min(crop_zyx) < 1:
            raise ValueError(f"crop must be 3 positive sizes, got {crop_zyx}")
        self.volumes = list(volumes)
        self.crop_zyx = tuple(int(c) for c in crop_zyx)
        self.rng = np.random.default_rng(seed)
        self.bone_bias = bone_bias
        self._bone_cells = [np.argwhere(v.target_net >= 0.5) for v in self.volumes]

    def _box(self, index: int) -> tuple[slice, slice, slice]:
        vol = self.volumes[index]
        shape = vol.image_net.shape
        size = [min(c, n) for c, n in zip(self.crop_zyx, shape, strict=True)]
        cells = self._bone_cells[index]
        if len(cells) and self.rng.random() < self.bone_bias:
            centre = cells[self.rng.integers(len(cells))]
        else:
            centre = [self.rng.integers(n) for n in shape]
        starts = [
            int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, size, shape, strict=True)
        ]
        return tuple(slice(a, a + s) for a, s in zip(starts, size, strict=True))

    def crop(self, index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One crop: ``(image, target)``, each ``(d, h, w)`` float32 (sizes vary by volume)."""
        if index is None:
            index = int(self.rng.integers(len(self.volumes)))
        vol = self.volumes[index]
        box = self._box(index)
        image = vol.image_net[box].copy()
        target = vol.target_net[box].copy()
        if self.rng.random() < 0.5:
            image, target = image[..., ::-1].copy(), target[..., ::-1].copy()
        image *= float(self.rng.uniform(0.9, 1.1))
        return torch.from_numpy(image), torch.from_numpy(target)

    def slices(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` axial slices of one crop each: ``(count, 1, h, w)`` image and target.

        All slices come from crops of one in-plane size (the smallest drawn), so they stack.
        """
        pairs = []
        for _ in range(count):
            image, target = self.crop()
            z = int(self.rng.integers(image.shape[0]))
            pairs.append((image[z], target[z]))
        h = min(p[0].shape[0] for p in pairs)
        w = min(p[0].shape[1] for p in pairs)
        images = torch.stack([p[0][:h, :w] for p in pairs])[:, None]
        targets = torch.stack([p[1][:h, :w] for p in pairs])[:, None]
        return images, targets
