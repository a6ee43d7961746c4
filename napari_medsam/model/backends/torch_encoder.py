"""The reference backend: the image encoder in eager PyTorch, fp32, on the engine's device."""

from __future__ import annotations

import torch
from torch import nn


def is_medsa_encoder(encoder: nn.Module) -> bool:
    """True for a Med-SA encoder, whose forward takes ``(images, click_maps, depth)``."""
    return hasattr(encoder, "medsa_click_embed")


def run_torch_encoder(
    encoder: nn.Module, images: torch.Tensor, click_maps: torch.Tensor | None, depth: int
) -> torch.Tensor:
    """One eager forward pass without gradients; see :class:`TorchEncoder`."""
    with torch.inference_mode():
        if is_medsa_encoder(encoder):
            return encoder(images, click_maps, depth)
        if click_maps is not None or depth != 1:
            raise ValueError("click maps and slab depth need a Med-SA model")
        return encoder(images)


class TorchEncoder:
    """Image encoder callable on torch (the reference path).

    Parameters
    ----------
    encoder : nn.Module
        The model's ``image_encoder``, weights loaded and in eval mode.
    device : torch.device
        Where the encoder lives; inputs are moved there.
    """

    backend = "torch"
    precision = "fp32"

    def __init__(self, encoder: nn.Module, device: torch.device | str = "cpu") -> None:
        self.encoder = encoder
        self.device = torch.device(device)

    def __call__(
        self, images: torch.Tensor, click_maps: torch.Tensor | None = None, depth: int = 1
    ) -> torch.Tensor:
        """(N, 3, S, S) float32 preprocessed slices (+ (N, 3, S, S) click maps) -> (N, C, h, w)."""
        images = images.to(self.device)
        if click_maps is not None:
            click_maps = click_maps.to(self.device)
        return run_torch_encoder(self.encoder, images, click_maps, depth)

    def describe(self) -> str:
        return f"torch fp32 on {self.device}"
