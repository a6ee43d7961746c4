"""One fine-tuning step with iterative click simulation (SimpleClick / RITM training).

1. the cases' initial prompts (:func:`napari_medsam.training.prompts_sim.initial_prompt`);
2. k in 0..``max_iter_clicks`` drawn; k times, without gradients, predict and add a
   click at the error of the model's own prediction, fed back as the previous mask
   (:func:`~napari_medsam.training.prompts_sim.add_error_click`);
3. predict with gradients and minimise NFL + Dice against the truth in the
   low-res frame (padding excluded), one optimiser step.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_medsam.training.config import FinetuneConfig
from napari_medsam.training.data import TrainingSet
from napari_medsam.training.forward import PromptedMedSA, run_prompts
from napari_medsam.training.losses import segmentation_loss
from napari_medsam.training.precision import autocast_for as _autocast
from napari_medsam.training.prompts_sim import add_error_click, initial_prompt


def train_step(
    module: torch.nn.Module,
    raw: PromptedMedSA,
    optimizer: torch.optim.Optimizer,
    data: TrainingSet,
    indices: list[int],
    rng: np.random.Generator,
    config: FinetuneConfig,
    device: torch.device,
    cpu_bf16: bool = False,
) -> dict:
    """One optimiser step on the cases ``indices`` (see the module docstring).

    Parameters
    ----------
    module : nn.Module
        ``raw`` or its DistributedDataParallel wrapper (the graded forward).
    raw : PromptedMedSA
        Used for the gradient-free iterative clicks.
    config : FinetuneConfig
        Its ``prompts`` (the click simulation), ``dice_weight`` and ``focal_gamma``.
    cpu_bf16 : bool
        Run the forward passes under bf16 autocast on the CPU (the loss is fp32).

    Returns
    -------
    dict
        ``loss`` (float), ``iters`` (iterative clicks run), ``clicks`` (mean
        clicks per case in the final prompt).
    """
    sim = config.prompts
    cases = [data.cases[i] for i in indices]
    side, resize = data.spec.side, data.spec.resize
    single_multimask = data.spec.multimask_single_click
    images = torch.stack([data.image(c) for c in cases]).to(device)
    hws = [data.hw(c) for c in cases]
    states = [initial_prompt(data.gt_yx(c), rng, sim) for c in cases]
    n_iters = int(rng.integers(0, sim.max_iter_clicks + 1))
    with torch.no_grad(), _autocast(device, cpu_bf16):
        for _ in range(n_iters):
            active = [i for i, s in enumerate(states) if s.takes_clicks]
            if not active:
                break
            logits, _ = run_prompts(
                raw,
                images[active],
                [states[i].slice_prompt() for i in active],
                [hws[i] for i in active],
                side,
                resize=resize,
                multimask_single_click=single_multimask,
            )
            logits = logits.float().cpu().numpy()
            for j, i in enumerate(active):
                add_error_click(states[i], logits[j], side, resize=resize)
    targets, weights = [], []
    for c in cases:
        target, (h, w) = data.target(c)
        weight = torch.zeros(target.shape)
        weight[:h, :w] = 1.0
        targets.append(target)
        weights.append(weight)
    target = torch.stack(targets).to(device)
    weight = torch.stack(weights).to(device)
    with _autocast(device, cpu_bf16):
        logits, _ = run_prompts(
            module,
            images,
            [s.slice_prompt() for s in states],
            hws,
            side,
            resize=resize,
            multimask_single_click=single_multimask,
        )
    loss = segmentation_loss(
        logits.float(), target, weight, config.dice_weight, config.focal_gamma
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {
        "loss": float(loss.detach()),
        "iters": n_iters,
        "clicks": float(np.mean([len(s.points_yx) for s in states])),
    }
