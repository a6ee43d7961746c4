"""The resumable training state: Med-SA parts, optimiser, step, RNG states, history.

Written by rank 0 at the end of every epoch to ``<out>.state.pt`` (a
``torch.save``d dict of tensors and plain Python values, readable with
``weights_only=True``), next to the Med-SA checkpoint the app loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_medsam.io.atomic import atomic_write
from napari_medsam.model.medsa.checkpoint import backbone_fingerprint, medsa_state_dict
from napari_medsam.model.medsa.config import is_medsa_key

STATE_FORMAT = "napari-medsam/finetune-state"
STATE_VERSION = 1


def save_state(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    epoch: int,
    rng: np.random.Generator,
    history: Mapping[str, Any],
    config: Mapping[str, Any],
) -> Path:
    """Write the training state atomically (temporary file, then rename)."""
    path = Path(path)
    payload = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "step": int(step),
        "epoch": int(epoch),
        "medsa_state_dict": medsa_state_dict(model),
        "backbone_fingerprint": backbone_fingerprint(model.state_dict()),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy_rng": rng.bit_generator.state,
        "history": dict(history),
        "config": dict(config),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a training state (``weights_only=True``); ValueError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state to resume from: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, Mapping) or payload.get("format") != STATE_FORMAT:
        raise ValueError(f"{path.name} is not a napari-medsam training state")
    return dict(payload)


def restore_state(
    payload: Mapping[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> None:
    """Put a saved state back into the model, optimiser and RNGs.

    Raises
    ------
    ValueError
        The state was made on other backbone weights.
    """
    actual = backbone_fingerprint(model.state_dict())
    if payload["backbone_fingerprint"] != actual:
        raise ValueError(
            "the training state was made on other backbone weights "
            f"({payload['backbone_fingerprint']} vs {actual}); resume with the same backbone"
        )
    missing, unexpected = model.load_state_dict(dict(payload["medsa_state_dict"]), strict=False)
    missing = [k for k in missing if is_medsa_key(k)]
    if unexpected or missing:
        raise ValueError(
            f"the training state does not fit this Med-SA model "
            f"(unexpected {unexpected[:4]}, missing {missing[:4]})"
        )
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    if payload.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    rng.bit_generator.state = payload["numpy_rng"]
