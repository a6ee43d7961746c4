"""Saving and loading automatic-segmentation checkpoints (MIP U-Net and slice U-Net).

A file is one ``torch.save``d dict of plain types and tensors, read back with
``torch.load(..., weights_only=True)``::

    {"format": "napari-medsam/auto-seg", "version": 1,
     "kind": "mip-unet" | "slice-unet",
     "config": {...},                  # MipUNetConfig / SliceUNetConfig fields
     "state_dict": {tensors, float32},
     "card": {...}}                    # training summary (JSON types)

Loading is strict: a wrong format, an unknown config key, a missing, unexpected,
misshapen or non-finite weight is a :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_medsam.io.atomic import atomic_write
from napari_medsam.model.checkpoints import CheckpointError
from napari_medsam.model.mipunet.network import MipUNet, MipUNetConfig
from napari_medsam.model.mipunet.slice_net import SliceUNet, SliceUNetConfig

__all__ = ["FORMAT", "KINDS", "load_auto_model", "save_auto_model"]

FORMAT = "napari-medsam/auto-seg"
VERSION = 1
#: kind -> (module class, config class)
KINDS: dict[str, tuple[type[nn.Module], type]] = {
    "mip-unet": (MipUNet, MipUNetConfig),
    "slice-unet": (SliceUNet, SliceUNetConfig),
}


def _kind_of(model: nn.Module) -> str:
    for kind, (cls, _) in KINDS.items():
        if type(model) is cls:
            return kind
    raise TypeError(f"not an automatic-segmentation model: {type(model).__name__}")


def save_auto_model(
    model: nn.Module, path: str | os.PathLike, card: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` atomically (temporary file, fsync, rename); returns the path.

    Parameters
    ----------
    model : MipUNet or SliceUNet
    path : path
    card : mapping, optional
        Training summary stored beside the weights (JSON-compatible values).
    """
    path = Path(path).expanduser()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "kind": _kind_of(model),
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "card": dict(card or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def _config(config_cls: type, raw: Any, kind: str):
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{kind} checkpoint: 'config' is not a mapping")
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"{kind} checkpoint: unknown config keys {unknown}")
    defaults = config_cls()
    values = {}
    for name, value in raw.items():
        expected = type(getattr(defaults, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise CheckpointError(
                f"{kind} checkpoint: config {name!r} must be {expected.__name__}, got {value!r}"
            )
        values[name] = value
    try:
        return config_cls(**values)
    except ValueError as err:
        raise CheckpointError(f"{kind} checkpoint: {err}") from None


def load_auto_model(
    path: str | os.PathLike, kind: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_auto_model`.

    Parameters
    ----------
    path : path
    kind : str, optional
        Expected kind (``"mip-unet"``, ``"slice-unet"``); any when None.

    Returns
    -------
    (model, card)
        The model in eval mode on the CPU, and its card.

    Raises
    ------
    CheckpointError
        Unreadable file, wrong format, version or kind, a bad config, weights that do
        not fit strictly, or non-finite weights.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: the file is not ours
        raise CheckpointError(
            f"{path.name}: not a readable checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path.name}: not a napari-medsam automatic-segmentation checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path.name}: checkpoint version {payload.get('version')!r} unsupported"
        )
    found = payload.get("kind")
    if found not in KINDS:
        raise CheckpointError(f"{path.name}: unknown model kind {found!r}")
    if kind is not None and found != kind:
        raise CheckpointError(f"{path.name} holds a {found} model, not a {kind} model")
    model_cls, config_cls = KINDS[found]
    model = model_cls(_config(config_cls, payload.get("config"), found))
    state = payload.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path.name}: no 'state_dict'")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{path.name}: weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, ref in own.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(f"{path.name}: {key} has the wrong shape")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path.name}: {key} holds NaN or infinite weights")
    model.load_state_dict({k: state[k].to(own[k].dtype) for k in own}, strict=True)
    card = payload.get("card")
    return model.eval(), dict(card) if isinstance(card, Mapping) else {}
