"""One whole run: data, model, training, held-out figures, card (what ``train-auto`` does)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.model.mipunet.checkpoint import KINDS, load_auto_model, save_auto_model
from napari_medsam.training.mipunet.card import data_card, write_model_card
from napari_medsam.training.mipunet.data import GridVolume, load_labelled, volumes
from napari_medsam.training.mipunet.evaluate import evaluate_model
from napari_medsam.training.mipunet.sampler import CropSampler
from napari_medsam.training.mipunet.trainer import TrainSettings, train_model

__all__ = ["build_model", "evaluate_checkpoint", "train_task"]


def build_model(task: str, options: Mapping[str, Any] | None = None):
    """A fresh model of ``task`` (``"mip-unet"`` / ``"slice-unet"``) with config ``options``."""
    if task not in KINDS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(KINDS)}")
    model_cls, config_cls = KINDS[task]
    known = {f.name for f in dataclasses.fields(config_cls)}
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"{task} has no option {unknown[0]!r}")
    return model_cls(config_cls(**given))


def _load(split: str, data_root, spacing_mm: float) -> list[GridVolume]:
    return [load_labelled(v, data_root, spacing_mm) for v in volumes(split)]


def train_task(
    task: str,
    data_root: str | Path,
    out: str | Path,
    settings: TrainSettings,
    options: Mapping[str, Any] | None = None,
    crop_zyx: tuple[int, int, int] = (32, 96, 96),
    command: str = "",
) -> dict[str, Any]:
    """Train ``task`` on the training split, score it on the held-out split, write the card.

    Writes ``out`` (checkpoint, atomically, every ``checkpoint_every`` steps),
    ``out``'s ``.log.jsonl``, ``.eval.json`` and ``.md`` (model card).

    Returns
    -------
    dict
        The held-out figures (:func:`..evaluate.evaluate_model`).
    """
    out = Path(out)
    model = build_model(task, options)
    train = _load("train", data_root, model.config.spacing_mm)
    sampler = CropSampler(train, crop_zyx, seed=settings.seed)
    card = {"data": data_card(volumes("train"), volumes("heldout")), "target": model.config.target,
            "config": dataclasses.asdict(model.config), "crop_zyx": list(crop_zyx), "command": command}  # fmt: skip
    train_model(model, sampler, settings, out, card)
    return evaluate_checkpoint(out, data_root, train=train)


def evaluate_checkpoint(checkpoint: str | Path, data_root: str | Path, train: list[GridVolume] | None = None,
                        threads: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Score a checkpoint on the held-out split; write ``.eval.json`` and the ``.md`` card beside it.

    The figures are also stored in the checkpoint's card (rewritten atomically).
    """
    checkpoint = Path(checkpoint)
    model, card = load_auto_model(checkpoint)
    spacing = model.config.spacing_mm
    train = train if train is not None else _load("train", data_root, spacing)
    figures = evaluate_model(model, _load("heldout", data_root, spacing), train, threads=threads)
    atomic_write_text(checkpoint.with_suffix(".eval.json"), json.dumps(figures, indent=2) + "\n")
    kind = next(k for k, (cls, _) in KINDS.items() if type(model) is cls)
    write_model_card(checkpoint.with_suffix(".md"), kind, card, figures)
    save_auto_model(model, checkpoint, dict(card, heldout=figures))
    return figures
