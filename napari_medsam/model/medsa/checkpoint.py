"""Saving and loading Med-SA checkpoints.

A Med-SA file is one ``torch.save``d dict (readable with ``weights_only=True``)::

    {"format": "napari-medsam/medsa", "version": 1,
     "config": asdict(MedSAConfig),
     "backbone": {"name": ..., "fingerprint": ...},
     "state_dict": {Med-SA parameters only},
     "backbone_state_dict": {...}}          # only in a full save

The parts-only file is small (adapters, HyP-Adpt, depth biases, click embedding)
and is loaded onto a backbone whose fingerprint -- a hash of every backbone
tensor's name and shape and of a few of its values -- must match the stored one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch

from napari_medsam.io.atomic import atomic_write
from napari_medsam.model.medsa.build import (
    backbone_state_dict_from,
    build_medsa,
)
from napari_medsam.model.medsa.config import MedSAConfig, MedSAError, is_medsa_key
from napari_medsam.model.medsa.model import MedSAModel

logger = logging.getLogger(__name__)

FORMAT = "napari-medsam/medsa"
VERSION = 1
_SAMPLED_TENSORS = 16
_SAMPLED_VALUES = 8


def backbone_fingerprint(state_dict: Mapping[str, Any]) -> str:
    """Hash identifying backbone weights: all names and shapes, a few values.

    Med-SA keys are ignored, so a Med-SA model's full state dict and its plain
    backbone's give the same fingerprint. Values are the first 8 entries of 16
    evenly spaced floating-point tensors, rounded to 6 significant digits.

    Returns
    -------
    str
        16 hex digits.
    """
    keys = sorted(
        k for k, v in state_dict.items() if isinstance(v, torch.Tensor) and not is_medsa_key(k)
    )
    digest = hashlib.sha256()
    for k in keys:
        digest.update(f"{k}:{tuple(state_dict[k].shape)};".encode())
    floats = [k for k in keys if state_dict[k].is_floating_point() and state_dict[k].numel()]
    step = max(1, len(floats) // _SAMPLED_TENSORS)
    for k in floats[::step][:_SAMPLED_TENSORS]:
        values = state_dict[k].detach().reshape(-1)[:_SAMPLED_VALUES].float().cpu().tolist()
        digest.update((k + ":" + ",".join(f"{v:.6g}" for v in values) + ";").encode())
    return digest.hexdigest()[:16]


def medsa_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The Med-SA parts' tensors of ``model`` (detached CPU copies)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if is_medsa_key(k)}


def backbone_part(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's tensors of ``model`` (plain SAM / LiteMedSAM keys, CPU)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if not is_medsa_key(k)}


def save_medsa(model: MedSAModel, path: str | Path, full: bool = False) -> Path:
    """Write a Med-SA checkpoint.

    Parameters
    ----------
    model : MedSAModel
    path : str or Path
    full : bool
        Also store the backbone's weights (a self-contained file); otherwise only
        the Med-SA parts and the backbone's identity.
    """
    path = Path(path).expanduser()
    backbone = backbone_part(model)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": asdict(model.config),
        "backbone": {"name": model.config.backbone, "fingerprint": backbone_fingerprint(backbone)},
        "state_dict": medsa_state_dict(model),
    }
    if full:
        payload["backbone_state_dict"] = backbone
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomically: a full disk or a kill mid-save leaves an existing checkpoint as it was
    return atomic_write(path, lambda f: torch.save(payload, f))


def is_medsa_payload(obj: Any) -> bool:
    """True for a dict written by :func:`save_medsa`."""
    return isinstance(obj, Mapping) and str(obj.get("format", "")) == FORMAT


def read_medsa(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read and validate a Med-SA file (``weights_only=True``) or an already loaded dict.

    Raises
    ------
    MedSAError
        Not a Med-SA checkpoint, a newer version, or a malformed header.
    """
    name = "checkpoint"
    if isinstance(source, Mapping):
        payload = dict(source)
    else:
        path = Path(source).expanduser()
        name = path.name
        if not path.is_file():
            raise MedSAError(f"Med-SA checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for corrupt / unsafe files
            raise MedSAError(f"{name}: not a readable Med-SA checkpoint ({err})") from None
    if not is_medsa_payload(payload):
        raise MedSAError(f"{name}: not a Med-SA checkpoint (no format {FORMAT!r})")
    if int(payload.get("version", 0)) > VERSION:
        raise MedSAError(
            f"{name}: Med-SA checkpoint version {payload['version']} is newer than {VERSION}"
        )
    for key in ("config", "backbone", "state_dict"):
        if not isinstance(payload.get(key), Mapping):
            raise MedSAError(f"{name}: Med-SA checkpoint lacks its {key!r} entry")
    return payload


def config_from_payload(payload: Mapping[str, Any]) -> MedSAConfig:
    """The :class:`MedSAConfig` stored in a Med-SA payload (unknown fields ignored)."""
    known = {f.name for f in fields(MedSAConfig)}
    return MedSAConfig(**{k: v for k, v in payload["config"].items() if k in known})


def load_medsa_parts(
    model: MedSAModel, payload: Mapping[str, Any], source: str = "checkpoint"
) -> None:
    """Load a payload's Med-SA parts onto ``model`` after checking the backbone's identity.

    Raises
    ------
    MedSAError
        Other backbone (name or fingerprint), other Med-SA configuration, or keys
        that do not match the model's Med-SA parts.
    """
    stored = payload["backbone"]
    if stored.get("name") != model.config.backbone:
        raise MedSAError(
            f"{source}: Med-SA parts for backbone {stored.get('name')!r} cannot be loaded onto "
            f"a {model.config.backbone!r} backbone"
        )
    actual = backbone_fingerprint(model.state_dict())
    if stored.get("fingerprint") != actual:
        raise MedSAError(
            f"{source}: these Med-SA parts were trained on other {stored.get('name')} weights "
            f"(backbone fingerprint {stored.get('fingerprint')}, this backbone's is {actual}); "
            "load them with the backbone checkpoint they were made from"
        )
    own = {k for k in model.state_dict() if is_medsa_key(k)}
    given = set(payload["state_dict"])
    if own != given:
        missing, unexpected = sorted(own - given)[:4], sorted(given - own)[:4]
        raise MedSAError(
            f"{source}: Med-SA parts do not fit this model (missing {missing}, unexpected {unexpected})"
        )
    model.load_state_dict(dict(payload["state_dict"]), strict=False)
    model.eval()


def load_medsa(
    source: str | Path | Mapping[str, Any],
    backbone_checkpoint: str | Path | None = None,
) -> MedSAModel:
    """Build the Med-SA model a checkpoint describes and load its weights (CPU, eval mode).

    Parameters
    ----------
    source : str, Path or mapping
        A Med-SA file or its loaded dict.
    backbone_checkpoint : str or Path, optional
        The backbone's plain checkpoint, needed for a parts-only file of a SAM
        backbone (LiteMedSAM defaults to the bundled weights). Ignored for a full file.

    Raises
    ------
    MedSAError
        Not a Med-SA file, no backbone weights available, or a backbone that does
        not match the one the Med-SA parts belong to.
    """
    payload = read_medsa(source)
    name = Path(source).name if isinstance(source, (str, Path)) else "checkpoint"
    config = config_from_payload(payload)
    if isinstance(payload.get("backbone_state_dict"), Mapping):
        backbone = payload["backbone_state_dict"]
        if backbone_checkpoint is not None:
            logger.warning("%s holds its backbone; ignoring %s", name, backbone_checkpoint)
    else:
        backbone = backbone_state_dict_from(config.backbone, backbone_checkpoint)
        if backbone is None:
            raise MedSAError(
                f"{name} holds only Med-SA parts for {config.backbone}; give the backbone "
                "checkpoint they were made from"
            )
    model = build_medsa(config.backbone, backbone, config)
    load_medsa_parts(model, payload, name)
    return model
