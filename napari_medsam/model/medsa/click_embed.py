"""SimpleClick's click encoding: click maps through their own, zero-initialised patch embedding."""

from __future__ import annotations

import torch
from torch import nn

CLICK_CHANNELS = 3  # positive disks, negative disks, previous mask


class ClickEmbed(nn.Module):
    """Patch-embed (N, 3, S, S) click maps like the image, to add them to the image tokens.

    The convolution has the image patch embedding's kernel, stride and width and
    starts at zero (weights and bias), so untrained it adds nothing.

    Parameters
    ----------
    embed_dim : int
        Width of the image patch tokens.
    kernel_size, stride : int
        Those of the image patch embedding (16 / 16 for SAM; 1 / 1 for LiteMedSAM's TinyViT).
    channels_last : bool
        Return (N, h, w, C) like SAM's ``PatchEmbed`` (True) or (N, C, h, w) like TinyViT's.
    """

    def __init__(
        self, embed_dim: int, kernel_size: int, stride: int, channels_last: bool = True
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(CLICK_CHANNELS, embed_dim, kernel_size=kernel_size, stride=stride)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.channels_last = channels_last

    def forward(self, click_maps: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) maps in the model frame -> tokens shaped like the image patch tokens."""
        x = self.proj(click_maps)
        return x.permute(0, 2, 3, 1) if self.channels_last else x
