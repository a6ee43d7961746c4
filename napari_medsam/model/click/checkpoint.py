"""Saving and loading click-decoder checkpoints.

A click-decoder file is one ``torch.save``d dict (readable with ``weights_only=True``)::

    {"format": "napari-medsam/medsa-click", "version": 1,
     "config": asdict(ClickConfig),
     "backbone": {"name": "litemedsam", "fingerprint": ...},
     "state_dict": {ClickDecoder tensors, float16},
     "card": {...}}                       # training summary (free-form, JSON types)

The format string starts with Med-SA's, so the generic checkpoint reader keeps the
dict whole and :func:`napari_medsam.model.medsa.engine.load_medsa_engine` hands it
here. The decoder rides on the bundled LiteMedSAM, whose weights are checked by
fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from napari_medsam.io.atomic import atomic_write
from napari_medsam.model.checkpoints import CheckpointError
from napari_medsam.model.click.decoder import ClickConfig, ClickDecoder

FORMAT = "napari-medsam/medsa-click"
VERSION = 1


def is_click_checkpoint(obj: Any) -> bool:
    """Whether a loaded dict is a click-decoder checkpoint."""
    return isinstance(obj, Mapping) and obj.get("format") == FORMAT


def _fingerprint(model: torch.nn.Module) -> str:
    from napari_medsam.model.medsa.checkpoint import backbone_fingerprint

    return backbone_fingerprint(model.state_dict())


def save_click_decoder(
    decoder: ClickDecoder,
    backbone: torch.nn.Module,
    path: str | Path,
    card: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``decoder`` (float16) atomically to ``path``; returns the path.

    Parameters
    ----------
    decoder : ClickDecoder
    backbone : nn.Module
        The model whose encoder and box decoder it rides on (fingerprinted).
    path : str or Path
    card : mapping, optional
        Training summary stored beside the weights (JSON-compatible values).
    """
    path = Path(path).expanduser()
    state = {
        k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
        for k, v in decoder.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": asdict(decoder.config),
        "backbone": {"name": decoder.config.backbone, "fingerprint": _fingerprint(backbone)},
        "state_dict": state,
        "card": dict(card or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda fh: torch.save(payload, fh))


def _config(raw: Any) -> ClickConfig:
    if not isinstance(raw, Mapping):
        raise CheckpointError("click checkpoint: 'config' is not a mapping")
    known = {f.name: f for f in fields(ClickConfig)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise CheckpointError(f"click checkpoint: unknown config keys {unknown}")
    values = {}
    for name, value in raw.items():
        expected = type(getattr(ClickConfig(), name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected):
            raise CheckpointError(
                f"click checkpoint: config {name!r} must be {expected.__name__}, got {value!r}"
            )
        values[name] = value
    return ClickConfig(**values)


def click_decoder_from(payload: Mapping[str, Any], backbone: torch.nn.Module) -> ClickDecoder:
    """Build the checkpoint's :class:`ClickDecoder` on ``backbone`` and load its weights.

    Raises
    ------
    CheckpointError
        Wrong format or version, a config that does not parse, a backbone whose
        fingerprint differs, non-finite weights, or weights that do not fit strictly.
    """
    if not is_click_checkpoint(payload):
        raise CheckpointError("not a napari-medsam click-decoder checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"click checkpoint version {payload.get('version')!r} unsupported")
    config = _config(payload.get("config"))
    stored = (payload.get("backbone") or {}).get("fingerprint")
    if stored != _fingerprint(backbone):
        raise CheckpointError(
            "click checkpoint: it was trained on other backbone weights than the bundled "
            f"{config.backbone} (fingerprint {stored!r})"
        )
    state = payload.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError("click checkpoint: no 'state_dict'")
    decoder = ClickDecoder(backbone.prompt_encoder, backbone.mask_decoder, config)
    own = decoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"click checkpoint: weights do not fit (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]})"
        )
    loaded = {}
    for key, ref in own.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(f"click checkpoint: {key} has the wrong shape")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"click checkpoint: {key} holds NaN or infinite weights")
        loaded[key] = value.to(ref.dtype)
    decoder.load_state_dict(loaded, strict=True)
    return decoder.eval()
