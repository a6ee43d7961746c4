"""Training loops of the MIP U-Net (two paths) and of the per-slice U-Net baseline.

MIP U-Net, as in Angermann et al.:

- **path A** (the first ``1 - frozen_fraction`` of the steps): a random subset of
  2..P directions, turned by a random offset, trains U, F and R. The loss is
  BCE + Dice of the 3D output and of U's map 0 against each view's projected target.
- **path B** (the rest): all P directions, U frozen (run without gradient), trains
  F and T on the 3D loss.

Checkpoints are written atomically every ``checkpoint_every`` steps and at the end,
with a JSON-lines log beside them; a run stops early at ``max_minutes``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from napari_medsam.io.atomic import atomic_write_text
from napari_medsam.model.mipunet.checkpoint import save_auto_model
from napari_medsam.model.mipunet.geometry import default_angles, mip
from napari_medsam.model.mipunet.network import MipUNet
from napari_medsam.model.mipunet.slice_net import SliceUNet
from napari_medsam.training.mipunet.sampler import CropSampler

__all__ = ["TrainSettings", "bce_dice", "train_model"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """One training run.

    Attributes
    ----------
    steps : int
    lr : float
        AdamW learning rate (cosine decay to a tenth within each path).
    frozen_fraction : float
        MIP U-Net: share of the steps on path B (U frozen, all directions).
    slices_per_step : int
        Slice U-Net: slices per step.
    checkpoint_every : int
    max_minutes : float or None
        Stop (and save) after this much wall time; each MIP path gets its share of it.
    seed : int
    """

    steps: int = 1000
    lr: float = 2e-3
    frozen_fraction: float = 0.25
    slices_per_step: int = 8
    checkpoint_every: int = 100
    max_minutes: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.checkpoint_every < 1 or self.slices_per_step < 1:
            raise ValueError(f"steps, checkpoint_every and slices_per_step must be >= 1: {self}")
        if not 0.0 <= self.frozen_fraction < 1.0:
            raise ValueError(f"frozen_fraction must be in [0, 1): {self.frozen_fraction}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0: {self.lr}")


def bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean BCE-with-logits plus soft Dice loss (``1 - Dice``), targets in [0, 1]."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    dice = (2 * (prob * target).sum() + 1.0) / (prob.sum() + target.sum() + 1.0)
    return bce + (1.0 - dice)


def _mip_step(
    model: MipUNet, image, target, path: str, gen: torch.Generator
) -> tuple[torch.Tensor, dict]:
    n = model.config.n_views
    angles = default_angles(n)
    if path == "A":
        k = int(torch.randint(min(2, n), n + 1, (1,), generator=gen))
        chosen = torch.randperm(n, generator=gen)[:k].sort().values
        offset = float(torch.rand(1, generator=gen)) * math.pi / n
        angles = angles[chosen] + offset
    volume, truth = image[None], target[None]
    if path == "B":  # U is frozen (requires_grad off): autograd records none of it
        out = model(volume, angles)
        return bce_dice(out.logits_zyx, truth), {}
    out = model(volume, angles)
    view_truth = mip(truth, angles).clamp(0, 1)
    loss3d = bce_dice(out.logits_zyx, truth)
    loss2d = bce_dice(out.view_logits, view_truth)
    return loss3d + loss2d, {"loss3d": loss3d.item(), "loss2d": loss2d.item(), "views": len(angles)}


def _trainable(model: nn.Module, path: str) -> list[nn.Parameter]:
    if isinstance(model, SliceUNet):
        return list(model.parameters())
    names = {"A": ("U", "F", "R"), "B": ("F", "T")}[path]
    parts = model.parts()
    for key, part in parts.items():
        part.requires_grad_(key in names)
    return [p for key in names for p in parts[key].parameters()]


def _optimizer(params, lr: float, steps: int):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(steps, 1)))
    )
    return opt, sched


def train_model(
    model: MipUNet | SliceUNet,
    sampler: CropSampler,
    settings: TrainSettings,
    out: str | Path,
    card: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place; write ``out`` (checkpoint) and ``out``'s ``.log.jsonl``.

    Returns
    -------
    list of dict
        One record per logged step (``step``, ``loss``, ``path``, ``seconds``...).
    """
    out = Path(out)
    log_path = out.with_suffix(".log.jsonl")
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    is_mip = isinstance(model, MipUNet)
    steps_a = (
        settings.steps
        if not is_mip
        else max(1, round(settings.steps * (1 - settings.frozen_fraction)))
    )
    phases = [("A", steps_a)] + (
        [("B", settings.steps - steps_a)] if is_mip and settings.steps > steps_a else []
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    records: list[dict[str, Any]] = []
    running, step = [], 0
    model.train()

    def save(reason: str) -> None:
        meta = dict(card or {}, settings=asdict(settings), steps_done=step,
                    minutes=round((time.perf_counter() - start) / 60, 2), stopped=reason,
                    final_loss=records[-1]["loss"] if records else None)  # fmt: skip
        save_auto_model(model, out, meta)
        atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in records))

    budget = None if settings.max_minutes is None else 60.0 * settings.max_minutes
    elapsed_share = 0.0
    stopped = "done"
    for path, n_steps in phases:
        # under a time budget each path keeps its share of it (path A cannot eat path B's)
        elapsed_share += n_steps / settings.steps
        deadline = None if budget is None else start + budget * elapsed_share
        opt, sched = _optimizer(_trainable(model, path), settings.lr, n_steps)
        for _ in range(n_steps):
            if deadline is not None and time.perf_counter() > deadline:
                stopped = "max_minutes"
                break
            if is_mip:
                image, target = sampler.crop()
                loss, extra = _mip_step(model, image, target, path, gen)
            else:
                images, targets = sampler.slices(settings.slices_per_step)
                loss, extra = bce_dice(model.unet(images), targets), {}
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss)} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
            if step % settings.checkpoint_every == 0 or step == settings.steps:
                records.append({"step": step, "path": path, "loss": sum(running) / len(running),
                                "seconds": round(time.perf_counter() - start, 1),
                                "cpu_seconds": round(time.process_time() - cpu_start, 1), **extra})  # fmt: skip
                logger.info("step %d path %s loss %.4f", step, path, records[-1]["loss"])
                running = []
                save("checkpoint" if step < settings.steps else "done")
    if stopped != "done" or not records or records[-1]["step"] != step:
        save(stopped)
    return records
