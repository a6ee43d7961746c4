"""SAM ViT models (B / L / H and smaller custom ones) from segment-anything's modules."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from torch import nn

from napari_medsam.model.configs import ModelConfig, SamViTConfig


def build_sam_vit(config: ModelConfig) -> nn.Module:
    """Build a SAM with a ViT encoder, random weights, as ``segment_anything._build_sam``.

    Parameters
    ----------
    config : SamViTConfig

    Returns
    -------
    segment_anything.modeling.Sam
        Image encoder (B, 3, S, S) -> (B, C, S / p, S / p); low-res logits are
        (4 S / p) square (256 for the standard 1024 px / 16 px models).
    """
    if not isinstance(config, SamViTConfig):
        raise TypeError(f"expected SamViTConfig, got {type(config).__name__}")
    grid = config.embedding_side
    encoder = ImageEncoderViT(
        depth=config.depth,
        embed_dim=config.embed_dim,
        img_size=config.image_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=config.num_heads,
        patch_size=config.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(config.global_attn_indexes),
        window_size=config.window_size,
        out_chans=config.prompt_embed_dim,
    )
    prompt_encoder = PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=config.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.prompt_embed_dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
        ),
        transformer_dim=config.prompt_embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=mask_decoder,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def tiny_sam_config() -> SamViTConfig:
    """A tiny random SAM for tests: 64-wide, 2-block ViT on a 256 px input.

    The 4 px patches give a 64 x 64 embedding, so the low-res logits are the usual
    256 x 256. A checkpoint of it is ``torch.save(build_model(tiny_sam_config()).state_dict(), path)``
    and :func:`napari_medsam.model.checkpoints.detect_kind` reads it as ``"sam_custom"``.
    """
    return SamViTConfig(
        name="SAM custom",
        embed_dim=64,
        depth=2,
        num_heads=2,
        global_attn_indexes=(),
        image_size=256,
        patch_size=4,
        window_size=8,
        prompt_embed_dim=32,
        decoder_depth=1,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
        mask_in_chans=8,
    )
