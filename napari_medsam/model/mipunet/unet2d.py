"""A small 2D U-Net (the ``U`` of the projection network, and the per-slice baseline).

Any input size works: the image is padded to a multiple of ``2 ** levels`` and
the output cropped back. GroupNorm, not BatchNorm, so that one projection or a
batch of eight behaves alike in training and inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet2D", "UNetConfig"]


@dataclass(frozen=True)
class UNetConfig:
    """Shape of a :class:`UNet2D`.

    Attributes
    ----------
    in_channels : int
    out_channels : int
    base : int
        Channels of the first level; each level below doubles them.
    levels : int
        Downsamplings (the input is padded to a multiple of ``2 ** levels``).
    """

    in_channels: int = 1
    out_channels: int = 1
    base: int = 16
    levels: int = 3


def _groups(channels: int) -> int:
    return max(1, min(8, channels // 4))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.GroupNorm(_groups(cout), cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.GroupNorm(_groups(cout), cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UNet2D(nn.Module):
    """Encoder-decoder with skip connections.

    Parameters
    ----------
    config : UNetConfig
    """

    def __init__(self, config: UNetConfig = UNetConfig()) -> None:
        super().__init__()
        if config.levels < 1 or config.base < 4:
            raise ValueError(f"U-Net needs levels >= 1 and base >= 4, got {config}")
        self.config = config
        widths = [config.base * 2**i for i in range(config.levels + 1)]
        self.down = nn.ModuleList()
        cin = config.in_channels
        for w in widths:
            self.down.append(_Block(cin, w))
            cin = w
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_low, w in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.up.append(nn.ConvTranspose2d(w_low, w, 2, stride=2))
            self.merge.append(_Block(2 * w, w))
        self.head = nn.Conv2d(widths[0], config.out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` images to ``(N, out_channels, H, W)`` logits."""
        if image.ndim != 4 or image.shape[1] != self.config.in_channels:
            raise ValueError(
                f"U-Net input must be (N, {self.config.in_channels}, H, W), got {tuple(image.shape)}"
            )
        height, width = image.shape[-2:]
        step = 2**self.config.levels
        pad_h, pad_w = (-height) % step, (-width) % step
        x = F.pad(image, (0, pad_w, 0, pad_h)) if pad_h or pad_w else image
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)[..., :height, :width]
