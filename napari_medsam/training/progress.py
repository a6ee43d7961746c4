"""What a fine-tuning run shows and writes: its progress bar, its per-epoch outputs, its digest."""

from __future__ import annotations

import json

import numpy as np
import torch

from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.model.medsa.checkpoint import medsa_state_dict, save_medsa
from napari_medsam.training.state import save_state


def medsa_digest(model: torch.nn.Module) -> str:
    """Hash of the Med-SA parameters (equal on every rank when DDP keeps them in sync)."""
    import hashlib

    digest = hashlib.sha256()
    for key, value in sorted(medsa_state_dict(model).items()):
        digest.update(key.encode())
        digest.update(value.float().numpy().tobytes())
    return digest.hexdigest()[:16]


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs) -> None: ...
    def close(self) -> None: ...


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar (tqdm comes with napari); a silent stand-in when disabled or missing."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is installed with napari
        return _NoBar()
    return tqdm(total=total, initial=initial, desc="finetune", unit="step")


def jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def save_outputs(config, model, optimizer, step, epoch, rng, history, full) -> None:
    """Write the Med-SA checkpoint, the resumable state and the history (each atomically)."""
    save_medsa(model, config.out, full=full)
    save_state(config.state_path, model, optimizer, step, epoch, rng, history, config.to_dict())
    atomic_write_text(str(config.out) + ".history.json", json.dumps(history, indent=1))
