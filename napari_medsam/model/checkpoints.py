"""Reading checkpoint files safely and recognising which model they hold.

Only ``torch.load(path, map_location="cpu", weights_only=True)`` is used: a file
that needs arbitrary pickled code is refused, never executed.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from napari_medsam.model.configs import KNOWN_CONFIGS, ModelConfig, SamViTConfig
from napari_medsam.model.errors import CheckpointError
from napari_medsam.model.sanity import check_finite_weights

logger = logging.getLogger(__name__)

MEDSA_FORMAT = "napari-medsam/medsa"

# (embed_dim, depth) of the released SAM image encoders
_SAM_VITS = {(768, 12): "sam_vit_b", (1024, 24): "sam_vit_l", (1280, 32): "sam_vit_h"}
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path.name}: this file contains pickled code, refusing to load it for safety "
                "(only plain tensor checkpoints are accepted; re-save it with "
                "torch.save(model.state_dict(), path))"
            ) from None
        raise CheckpointError(f"{path.name}: not a readable PyTorch checkpoint ({text})") from None
    except Exception as err:  # noqa: BLE001 - a damaged file fails in many ways inside torch
        raise CheckpointError(
            f"{path.name}: not a readable PyTorch checkpoint (corrupt or another format: {err})"
        ) from None


def _strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def unwrap_state_dict(obj: Any) -> dict[str, Any]:
    """Unwrap ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers and ``module.`` prefixes.

    A Med-SA checkpoint (``{"format": "napari-medsam/medsa", ...}``) is returned
    whole, since its loader needs the config stored beside the weights.

    Raises
    ------
    CheckpointError
        When ``obj`` holds no dict of tensors.
    """
    for _ in range(3):  # wrappers nest at most a couple of levels in practice
        if not isinstance(obj, Mapping):
            break
        if str(obj.get("format", "")).startswith(MEDSA_FORMAT):
            return dict(obj)
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("the file holds no model weights (expected a state dict of tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError("the file holds no model weights (expected a state dict of tensors)")
    return _strip_module_prefix(obj)


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint file's state dict on the CPU, safely.

    Parameters
    ----------
    path : str or Path
        A ``.pth`` / ``.pt`` file written by ``torch.save``.

    Returns
    -------
    dict
        Parameter name -> tensor, unwrapped (see :func:`unwrap_state_dict`).

    Raises
    ------
    CheckpointError
        Missing file, corrupt or non-torch file, pickled code, no weights, or
        weights holding NaN / infinity.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        state = unwrap_state_dict(_torch_load(path))
    except CheckpointError as err:
        if str(err).startswith(path.name):
            raise
        raise CheckpointError(f"{path.name}: {err}") from None
    check_finite_weights(state, path.name)  # NaN weights would paint nothing, silently
    return state


def state_dict_mismatch(
    own: Mapping[str, Any], state_dict: Mapping[str, Any], shown: int = 5
) -> list[str]:
    """Describe how ``state_dict`` fails to fit a model whose own state dict is ``own``.

    Parameters
    ----------
    own : mapping of str to tensor
        The model's ``state_dict()`` (or the part of it the weights must fill).
    state_dict : mapping of str to tensor
        The weights read from a file.
    shown : int
        How many keys each kind of mismatch names before "(+N more)".

    Returns
    -------
    list of str
        One phrase per kind of mismatch ("missing keys: ...", "unexpected keys: ...",
        "shape mismatches: name (file shape) vs (model shape)"); empty when the weights fit.
    """

    def show(keys: list[str]) -> str:
        more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
        return ", ".join(keys[:shown]) + more

    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    kinds = (("missing keys", missing), ("unexpected keys", unexpected))
    kinds += (("shape mismatches", mismatched),)
    return [f"{what}: {show(keys)}" for what, keys in kinds if keys]


def _block_indices(state: Mapping[str, Any]) -> list[int]:
    pattern = re.compile(r"^image_encoder\.blocks\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def detect_kind(state_dict: Mapping[str, Any]) -> str:
    """Recognise the model a state dict belongs to.

    Returns
    -------
    str
        ``"litemedsam"`` (TinyViT encoder), ``"sam_vit_b"`` / ``"sam_vit_l"`` /
        ``"sam_vit_h"`` (released SAM sizes), ``"sam_custom"`` (a SAM ViT of
        another size; see :func:`infer_sam_config`) or ``"medsa"``.

    Raises
    ------
    CheckpointError
        When the dict matches none of them.
    """
    if str(state_dict.get("format", "")).startswith(MEDSA_FORMAT):
        return "medsa"
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        return "litemedsam"
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    has_decoder = any(k.startswith("mask_decoder.") for k in state_dict)
    has_prompt = any(k.startswith("prompt_encoder.") for k in state_dict)
    if isinstance(patch, torch.Tensor) and has_decoder and has_prompt:
        key = (int(patch.shape[0]), len(_block_indices(state_dict)))
        return _SAM_VITS.get(key, "sam_custom")
    sample = ", ".join(list(state_dict)[:3])
    raise CheckpointError(
        "not a known model: expected LiteMedSAM, SAM (image_encoder/prompt_encoder/"
        f"mask_decoder) or a napari-medsam Med-SA checkpoint; first keys: {sample}"
    )


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...]:
    try:
        return tuple(state[key].shape)
    except KeyError:
        raise CheckpointError(f"SAM checkpoint lacks {key}") from None


def infer_sam_config(state_dict: Mapping[str, Any]) -> SamViTConfig:
    """Read a SAM ViT configuration off a state dict's tensor shapes.

    Embed dim and patch size from the patch embedding, depth from the block count,
    image size from the absolute position embedding, head width / window size /
    global-attention blocks from the relative-position tables (a global block's
    table spans the whole embedding grid), decoder sizes from its layers. The
    decoder's head count cannot be read off shapes; SAM's 8 is assumed.
    """
    embed_dim, _, patch, _ = _shape(state_dict, "image_encoder.patch_embed.proj.weight")
    grid = _shape(state_dict, "image_encoder.pos_embed")[1]
    blocks = _block_indices(state_dict)
    if not blocks:
        raise CheckpointError("SAM checkpoint has no image encoder blocks")
    head_dim = 64  # SAM's head width when no relative-position table says otherwise
    window, global_idx = 14, []
    for i in blocks:
        key = f"image_encoder.blocks.{i}.attn.rel_pos_h"
        if key not in state_dict:
            continue
        span, head_dim = _shape(state_dict, key)
        if span == 2 * grid - 1:
            global_idx.append(i)
        else:
            window = (span + 1) // 2
    prefix = "mask_decoder.transformer.layers"
    decoder_layers = {int(k.split(".")[3]) for k in state_dict if k.startswith(prefix + ".")}
    kind = detect_kind(state_dict)
    names = {"sam_vit_b": "SAM ViT-B", "sam_vit_l": "SAM ViT-L", "sam_vit_h": "SAM ViT-H"}
    return SamViTConfig(
        name=names.get(kind, f"SAM custom (ViT {embed_dim}x{len(blocks)})"),
        embed_dim=embed_dim,
        depth=len(blocks),
        num_heads=max(embed_dim // head_dim, 1),
        global_attn_indexes=tuple(global_idx),
        image_size=grid * patch,
        patch_size=patch,
        window_size=window,
        prompt_embed_dim=_shape(state_dict, "image_encoder.neck.0.weight")[0],
        decoder_depth=len(decoder_layers),
        decoder_mlp_dim=_shape(state_dict, f"{prefix}.0.mlp.lin1.weight")[0],
        iou_head_hidden_dim=_shape(state_dict, "mask_decoder.iou_prediction_head.layers.0.weight")[
            0
        ],
        mask_in_chans=_shape(state_dict, "prompt_encoder.mask_downscaling.3.weight")[0],
        num_multimask_outputs=_shape(state_dict, "mask_decoder.mask_tokens.weight")[0] - 1,
    )


def config_for_state_dict(state_dict: Mapping[str, Any]) -> ModelConfig:
    """The model configuration matching a LiteMedSAM / SAM state dict."""
    kind = detect_kind(state_dict)
    if kind == "litemedsam":
        return KNOWN_CONFIGS[kind]
    if kind == "medsa":
        raise CheckpointError("Med-SA checkpoints are built by napari_medsam.model.medsa")
    return infer_sam_config(state_dict)
