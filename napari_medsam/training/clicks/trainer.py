"""Train the click decoder on stored embeddings, with RITM-style interactive rounds.

Each step draws a batch sharing one start (:mod:`.sampler`), runs 0-9 gradient-free
corrective rounds (a click at the error of the model's own previous prediction,
whose logits are fed back; some rounds add no click: mask-only), then one round
with gradients. Loss: normalised focal + Dice on the low-res logits, plus the IoU
head's squared error against the true IoU. bf16 autocast on CPU. The run saves
its weights every ``save_every`` steps (atomically) and can warm-start from any
click checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_medsam.model.click.checkpoint import click_decoder_from, save_click_decoder
from napari_medsam.model.click.decoder import ClickConfig, ClickDecoder, single_click_rows
from napari_medsam.model.checkpoints import read_state_dict
from napari_medsam.training.clicks import rounds
from napari_medsam.training.clicks.sampler import CaseSampler
from napari_medsam.training.losses import segmentation_loss

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    """Settings of one training run (recorded in the model card)."""

    steps: int = 1000
    batch_size: int = 8
    lr_new: float = 5e-4
    lr_pretrained: float = 5e-5
    max_rounds: int = 9
    round_decay: float = 0.75
    mask_only_probability: float = 0.1
    iou_weight: float = 1.0
    bf16: bool = True
    seed: int = 0
    save_every: int = 100
    schedule_steps: int | None = None
    first_click_fraction: float = 0.0
    keep_snapshots: bool = False


def _new_part(name: str) -> bool:
    return "click_stem" in name or "medsa_" in name


def make_optimizer(decoder: ClickDecoder, settings: TrainSettings) -> torch.optim.Optimizer:
    new = [p for n, p in decoder.named_parameters() if _new_part(n)]
    old = [p for n, p in decoder.named_parameters() if not _new_part(n)]
    return torch.optim.AdamW(
        [{"params": new, "lr": settings.lr_new}, {"params": old, "lr": settings.lr_pretrained}],
        weight_decay=0.01,
    )


def lr_factor(step: int, total: int, warmup: int = 50) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class Trainer:
    """One training run (module docstring).

    Parameters
    ----------
    backbone : nn.Module
        The bundled LiteMedSAM (frozen; its box decoder answers ``box+click`` starts).
    decoder : ClickDecoder
    store : SliceStore
    train_records : sequence of int
    settings : TrainSettings
    """

    def __init__(self, backbone: nn.Module, decoder: ClickDecoder, store, train_records,
                 settings: TrainSettings) -> None:
        self.backbone = backbone.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.decoder = decoder
        self.store = store
        self.settings = settings
        self.sampler = CaseSampler(store, train_records, settings.seed)
        self.rng = np.random.default_rng(settings.seed + 1)
        self.optimizer = make_optimizer(decoder, settings)
        self.step = 0

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.settings.bf16)

    def embeddings(self, cases) -> torch.Tensor:
        return torch.from_numpy(
            np.stack([self.store.embedding(c.record) for c in cases]).astype(np.float32)
        )

    @torch.no_grad()
    def box_logits(self, emb: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) logits of the frozen bundled decoder for boxes alone."""
        model = self.backbone
        with self._autocast():
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
            logits, _ = model.mask_decoder(
                image_embeddings=emb,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
        return logits.float()

    def _decode(self, emb, cases, prev):
        points = rounds.point_tensors(cases, self.rng)
        with self._autocast():
            logits, iou = self.decoder(emb, points, rounds.box_tensor(cases), prev)
        return logits.float(), iou.float()

    def run_rounds(self, start: str, cases) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gradient-free part of a step: embeddings and the previous logits to train on."""
        s = self.settings
        emb = self.embeddings(cases)
        prev = rounds.prev_tensor(cases)
        if start == "box+click":
            prev = self.box_logits(emb, rounds.box_tensor(cases))
            rounds.feed_back(cases, prev)
        weights = s.round_decay ** np.arange(s.max_rounds + 1)
        n = int(self.rng.choice(len(weights), p=weights / weights.sum()))
        if start == "click" and self.rng.random() < s.first_click_fraction:
            n = 0  # train the first click itself more often (Dice@1)
        self.decoder.eval()
        with torch.no_grad():
            for _ in range(n):
                logits, _ = self._decode(emb, cases, prev)
                if self.rng.random() >= s.mask_only_probability:
                    rounds.feed_back(cases, logits)
                prev = logits
        self.decoder.train()
        return emb, prev

    def train_step(self) -> dict:
        s = self.settings
        start, cases = self.sampler.batch(s.batch_size)
        emb, prev = self.run_rounds(start, cases)
        for group, base in zip(self.optimizer.param_groups, (s.lr_new, s.lr_pretrained), strict=True):
            group["lr"] = base * lr_factor(self.step, s.schedule_steps or s.steps)
        gt = rounds.targets(cases)
        if self.decoder.config.first_click_multimask:
            seg, iou_loss, true_iou = self._multimask_loss(emb, cases, prev, gt)
        else:
            logits, iou_pred = self._decode(emb, cases, prev)
            true_iou = rounds.iou_of(logits.detach(), gt)
            seg = segmentation_loss(logits, gt)
            iou_loss = ((iou_pred[:, 0] - true_iou) ** 2).mean()
        loss = seg + s.iou_weight * iou_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        return {"step": self.step, "start": start, "loss": float(loss.detach()),
                "seg": float(seg.detach()), "iou_loss": float(iou_loss.detach()), "iou": float(true_iou.mean()),
                "clicks": float(np.mean([len(c.points_yx) for c in cases]))}

    def _multimask_loss(self, emb, cases, prev, gt):
        """SAM's ambiguity-aware loss: single-click rows learn from their best of 3 outputs.

        Other rows train the single output. The IoU head learns every output it is
        asked to rank. Returns (segmentation loss, IoU loss, (B,) IoU of the output
        each row would return).
        """
        points = rounds.point_tensors(cases, self.rng)
        boxes = rounds.box_tensor(cases)
        with self._autocast():
            logits_all, iou_all = self.decoder.forward_all(emb, points, boxes, prev)
        logits_all, iou_all = logits_all.float(), iou_all.float()
        single = single_click_rows(points, boxes, prev)
        seg_terms, iou_terms, chosen = [], [], []
        for row in range(logits_all.shape[0]):
            outputs = range(1, 4) if single is not None and bool(single[row]) else range(0, 1)
            target = gt[row : row + 1]
            losses = torch.stack([segmentation_loss(logits_all[row : row + 1, k : k + 1], target)
                                  for k in outputs])
            ious = torch.stack([rounds.iou_of(logits_all[row : row + 1, k : k + 1].detach(), target)[0]
                                for k in outputs])
            seg_terms.append(losses.min())
            predicted = iou_all[row, list(outputs)]
            iou_terms.append(((predicted - ious) ** 2).mean())
            chosen.append(ious[int(predicted.detach().argmax())])
        return torch.stack(seg_terms).mean(), torch.stack(iou_terms).mean(), torch.stack(chosen)

    def fit(self, out: Path, log_path: Path, card: dict, evaluate=None, eval_every: int = 120):
        """Train ``settings.steps`` steps, saving to ``out`` and logging JSON lines."""
        s = self.settings
        t0 = time.time()
        with open(log_path, "a") as log:
            while self.step < s.steps:
                if self.step % 50 == 0 and self.store.count < self.store.capacity:
                    self._refresh_records()
                info = self.train_step()
                info["elapsed_s"] = round(time.time() - t0, 1)
                if evaluate is not None and (self.step % eval_every == 0 or self.step == s.steps):
                    info["val"] = evaluate(self)
                    logger.info("step %d val %s", self.step, info["val"])
                log.write(json.dumps(info) + "\n")
                log.flush()
                if self.step % s.save_every == 0 or self.step == s.steps:
                    self.save(out, card, time.time() - t0)
                    if s.keep_snapshots:
                        self.save(snapshot_path(out, self.step), card, time.time() - t0)
        return self.step

    def _refresh_records(self) -> None:
        # a store still being built by another process: train on what is there
        self.store.refresh()
        train = [i for i, m in enumerate(self.store.meta) if m["split"] == "train"]
        self.sampler.records = np.asarray(train, np.int64)

    def save(self, out: Path, card: dict, seconds: float) -> Path:
        full = dict(card, settings=asdict(self.settings), steps_done=self.step,
                    train_seconds=round(seconds, 1))
        return save_click_decoder(self.decoder, self.backbone, out, full)


def snapshot_path(out: str | Path, step: int) -> Path:
    """Where the step-``step`` snapshot of a run writing ``out`` goes (``click_step00500.pt``)."""
    out = Path(out)
    return out.with_name(f"{out.stem}_step{step:05d}{out.suffix}")


def new_or_warm_decoder(backbone: nn.Module, config: ClickConfig, warm_start: str | Path | None):
    """A fresh :class:`ClickDecoder` on ``backbone``, or one loaded from a checkpoint."""
    if warm_start is None:
        return ClickDecoder(backbone.prompt_encoder, backbone.mask_decoder, config)
    payload = read_state_dict(warm_start)
    return click_decoder_from(payload, backbone)
