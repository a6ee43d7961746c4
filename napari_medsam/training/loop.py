"""``finetune(config) -> history``: train the Med-SA parts with iterative click simulation.

One step (SimpleClick / RITM training):

1. draw ``batch_size`` cases (DistributedSampler, seeded per epoch) and their
   initial prompts (:func:`napari_medsam.training.prompts_sim.initial_prompt`);
2. draw k in 0..``max_iter_clicks``; k times, without gradients, predict and add a
   click at the error of the model's own prediction, feeding it back as the
   previous mask (:func:`~napari_medsam.training.prompts_sim.add_error_click`);
3. predict with gradients and minimise NFL + Dice against the truth in the
   low-res frame (padding excluded); only the Med-SA parts train (AdamW).

With ``parts="decoder"`` only the mask decoder's Med-SA parts train, and the
slices' image embeddings are computed once before the first step
(:mod:`napari_medsam.training.cached`); steps 2 and 3 then skip the encoder.

bf16 autocast on CUDA; on a CPU with native bf16, the decoder-only steps
(``parts="decoder"``) also run under bf16 autocast unless ``precision="fp32"``. Rank 0 evaluates the held-out subset
with the eval protocol at the end of every epoch, writes the Med-SA checkpoint
(``config.out``), the resumable state (``<out>.state.pt``) and the history
(``<out>.history.json``).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from napari_medsam.model.medsa.build import (
    backbone_spec,
    backbone_state_dict_from,
    build_medsa,
    count_parameters,
    medsa_train_mode,
)
from napari_medsam.model.medsa.config import MedSAConfig
from napari_medsam.model.medsa.model import MedSAModel
from napari_medsam.training import distributed
from napari_medsam.training.cached import cache_embeddings, freeze_for_parts
from napari_medsam.training.config import FinetuneConfig
from napari_medsam.training.data import TrainingSet, Volume, load_volume
from napari_medsam.training.forward import PromptedMedSA
from napari_medsam.training.precision import cpu_bf16_steps
from napari_medsam.training.progress import jsonable, medsa_digest, progress_bar, save_outputs
from napari_medsam.training.state import load_state, restore_state
from napari_medsam.training.step import train_step
from napari_medsam.training.validate import evaluate_model, heldout_cases

logger = logging.getLogger(__name__)


def build_model(config: FinetuneConfig) -> MedSAModel:
    """Fresh Med-SA on the configured backbone, on the CPU, only ``config.parts`` trainable.

    Random backbone weights (test backbones, SAM without a checkpoint) are drawn
    under ``config.seed``, so a resumed run rebuilds the same ones.
    """
    weights = backbone_state_dict_from(config.backbone, config.backbone_checkpoint)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_medsa(config.backbone, weights, MedSAConfig(backbone=config.backbone))
    return freeze_for_parts(model, config.parts)


def load_training_set(config: FinetuneConfig, model: MedSAModel) -> TrainingSet:
    """Read the configured volumes and preprocess their training slices for ``model``."""
    volumes = [load_volume(scan, labels, config.window) for scan, labels in config.data]
    return training_set_for(config, model, volumes)


def training_set_for(
    config: FinetuneConfig, model: MedSAModel, volumes: list[Volume]
) -> TrainingSet:
    """A :class:`TrainingSet` of ``volumes`` for ``model`` under ``config``."""
    spec = backbone_spec(config.backbone).model_config.input_spec
    return TrainingSet(
        volumes,
        spec,
        int(model.prompt_encoder.mask_input_size[0]),
        labels=config.labels,
        val_fraction=config.val_fraction,
        split=config.split,
        seed=config.seed,
        min_area=config.min_area,
        other_axes=config.other_axes,
        other_axes_stride=config.other_axes_stride,
    )


def finetune(
    config: FinetuneConfig,
    volumes: list[Volume] | None = None,
    progress: bool = True,
) -> dict:
    """Fine-tune the Med-SA parts; see the module docstring.

    Parameters
    ----------
    config : FinetuneConfig
    volumes : list of Volume, optional
        Already loaded volumes (default: read ``config.data``).
    progress : bool
        Show a tqdm progress bar (rank 0).

    Returns
    -------
    dict
        The history: ``loss`` per step, ``epochs`` (per-epoch mean loss, seconds,
        held-out figures), ``val_before``, case and parameter counts, ``out``.
    """
    info = distributed.setup(config.device)
    try:
        return _finetune(config, volumes, progress, info)
    finally:
        distributed.teardown(info)


def _finetune(config, volumes, progress, info) -> dict:
    torch.manual_seed(config.seed + info.rank)
    rng = np.random.default_rng([config.seed, info.rank])
    model = build_model(config)
    total, trainable = count_parameters(model)
    data = (
        training_set_for(config, model, volumes)
        if volumes is not None
        else load_training_set(config, model)
    )
    model.to(info.device)
    t_embed = time.perf_counter()
    n_embedded = 0
    if config.parts == "decoder":
        n_embedded = cache_embeddings(
            model,
            data,
            info.device,
            progress=progress and info.is_main,
            backend=config.backend,
            precision=config.precision,
        )
    t_embed = time.perf_counter() - t_embed
    medsa_train_mode(model)
    raw = PromptedMedSA(model, from_embeddings=data.embedded)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    full = (
        config.save_full
        if config.save_full is not None
        else not backbone_spec(config.backbone).bundled
    )
    val_cases = heldout_cases(
        data.volumes, data.heldout, config.min_area, config.val_cases, config.seed
    )
    history: dict = {
        "loss": [],
        "epochs": [],
        "val_before": None,
        "n_train_cases": len(data),
        "n_train_slices": len(data.images),
        "heldout_objects": sorted([list(o) for o in data.heldout]),
        "n_val_cases": len(val_cases),
        "params_total": total,
        "params_trainable": trainable,
        "parts": config.parts,
        "n_embedded_slices": n_embedded,
        "embedding_seconds": t_embed,
        "world_size": info.world_size,
        "distributed": info.distributed,
        "out": str(config.out),
    }
    step = epoch = 0
    if config.resume:
        payload = load_state(config.state_path)
        restore_state(payload, model, optimizer, rng)
        step, epoch = int(payload["step"]), int(payload["epoch"])
        if info.rank != 0:  # the state holds rank 0's generator; others get their own
            rng = np.random.default_rng([config.seed, info.rank, step])
        history = dict(payload["history"])
        logger.info("resumed from %s at step %d (epoch %d)", config.state_path, step, epoch)
    module: torch.nn.Module = raw
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(
            raw,
            device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    sampler = torch.utils.data.DistributedSampler(
        range(len(data)),
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=True,
        seed=config.seed,
    )
    steps_per_epoch = max(1, math.ceil(sampler.num_samples / config.batch_size))
    total_steps = config.steps if config.steps is not None else config.epochs * steps_per_epoch
    history["steps_per_epoch"] = steps_per_epoch
    history["total_steps"] = total_steps

    # decoder-only: the encoder is frozen, so one engine keeps the held-out embeddings
    val_engine = None
    if config.parts == "decoder" and val_cases and info.is_main:
        from napari_medsam.model.medsa.engine import MedSAEngine

        val_engine = MedSAEngine(
            model,
            device=info.device,
            cache_bytes=1 << 30,
            backend=config.backend,
            precision=config.precision,
            background=False,
        )

    def validate() -> dict | None:
        if not val_cases:
            return None
        result = evaluate_model(
            model,
            data.volumes,
            val_cases,
            info.device,
            config.val_max_clicks,
            config.val_box,
            engine=val_engine,
        )
        medsa_train_mode(model)
        return jsonable(result)

    if info.is_main and step == 0 and config.eval_before and history["val_before"] is None:
        history["val_before"] = validate()
    distributed.barrier(info)
    bar = progress_bar(total_steps, step, progress and info.is_main)
    last_noc = None
    cpu_bf16 = cpu_bf16_steps(config, info.device)
    history["cpu_bf16_steps"] = cpu_bf16
    while step < total_steps:
        sampler.set_epoch(epoch)
        order = list(sampler)
        t0 = time.perf_counter()
        losses = []
        for b in range(steps_per_epoch):
            if step >= total_steps:
                break
            indices = order[b * config.batch_size : (b + 1) * config.batch_size]
            if not indices:
                break
            out = train_step(
                module, raw, optimizer, data, indices, rng, config, info.device, cpu_bf16
            )
            step += 1
            losses.append(out["loss"])
            history["loss"].append(out["loss"])
            bar.update(1)
            bar.set_postfix(loss=f"{out['loss']:.4f}", noc90=last_noc, refresh=False)
        epoch += 1
        record = {
            "epoch": epoch,
            "step": step,
            "loss": float(np.mean(losses)) if losses else None,
            "seconds": time.perf_counter() - t0,
            "val": None,
        }
        if info.is_main:
            record["val"] = validate()
            if record["val"]:
                last_noc = f"{record['val']['noc90']:.2f}"
                bar.set_postfix(loss=f"{record['loss']:.4f}", noc90=last_noc)
            history["epochs"].append(record)
            logger.info("epoch %d: %s", epoch, {k: v for k, v in record.items() if k != "val"})
            save_outputs(config, model, optimizer, step, epoch, rng, history, full)
        distributed.barrier(info)
    bar.close()
    model.eval()
    history["medsa_digest"] = medsa_digest(model)
    return history
