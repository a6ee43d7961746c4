"""A quick held-out check during training: RITM clicks on held-out store records.

Model frame, no zoom-in (the full evaluation is ``napari-medsam eval`` on the
volumes). A fixed, seeded set of cases; click 1 is the RITM first click, each
next click goes to the centre of the largest error, logits fed back.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_medsam.evaluation.clicker import next_click
from napari_medsam.training.clicks import rounds
from napari_medsam.training.clicks.sampler import MIN_AREA, Case


def heldout_cases(store, n: int = 48, seed: int = 7) -> list[Case]:
    """Up to ``n`` labelled objects from ``store`` (largest-first per record, seeded)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(store.count)
    cases = []
    for index in order:
        meta = store.meta[index]
        lab = np.asarray(store.arrays["lab"][index])
        label = meta.get("crop_label") or meta["labels"][int(rng.integers(len(meta["labels"])))]
        gt = lab == label
        if gt.sum() >= MIN_AREA:
            cases.append(Case(int(index), gt))
        if len(cases) == n:
            break
    return cases


@torch.no_grad()
def click_ious(trainer, store, cases: list[Case], clicks: int = 5, batch: int = 8) -> np.ndarray:
    """(n_cases, clicks) IoU after each click, for fresh copies of ``cases``."""
    ious = np.zeros((len(cases), clicks))
    trainer.decoder.eval()
    for start in range(0, len(cases), batch):
        chunk = [Case(c.record, c.gt) for c in cases[start : start + batch]]
        emb = torch.from_numpy(np.stack([store.embedding(c.record) for c in chunk]).astype(np.float32))
        for case in chunk:
            first = next_click(case.gt, np.zeros_like(case.gt))
            case.add_click(first.y, first.x, True)
        prev = None
        gt = rounds.targets(chunk)
        for k in range(clicks):
            points = rounds.point_tensors(chunk)
            with trainer._autocast():
                logits, _ = trainer.decoder(emb, points, None, prev)
            logits = logits.float()
            ious[start : start + len(chunk), k] = rounds.iou_of(logits, gt).numpy()
            rounds.feed_back(chunk, logits)
            prev = logits
    trainer.decoder.train()
    return ious


def click_curve(trainer, store, cases: list[Case], clicks: int = 5) -> list[float]:
    """Mean IoU after each of ``clicks`` clicks (rounded, for the training log)."""
    return [round(float(v), 4) for v in click_ious(trainer, store, cases, clicks).mean(0)]


def noc(ious: np.ndarray, threshold: float) -> float:
    """Mean number of clicks to reach ``threshold`` IoU; the cap for cases that never do."""
    reached = ious >= threshold
    first = np.where(reached.any(1), reached.argmax(1) + 1, ious.shape[1])
    return float(first.mean())
