"""Decoder-only fine-tuning: the mask decoder's Med-SA parts on cached image embeddings.

With the encoder's Med-SA parts at zero (adapters, depth attention and click
embedding start at zero and do not train here), a slice's image embedding is the
backbone's own and does not depend on the prompt. So it is computed once per
training slice, before the first step (batched, without gradients), and every
step -- including the gradient-free iterative-click rounds -- runs only the
prompt encoder and the mask decoder. The app's
:class:`~napari_medsam.model.medsa.engine.MedSAEngine` caches the same click-free
embedding for such a model, so clicks stay as fast as with the plain backbone.

What trains: the HyP-Adpt prompt adapter, the MLP adapter and the image adapter
of every two-way block (keys ``mask_decoder.*medsa_*``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from napari_medsam.model.backends import make_encoder_backend
from napari_medsam.model.medsa.config import is_medsa_key
from napari_medsam.training.data import TrainingSet

logger = logging.getLogger(__name__)

DECODER_PREFIX = "mask_decoder."


def is_decoder_medsa_key(key: str) -> bool:
    """True for a Med-SA parameter of the mask decoder (what ``parts="decoder"`` trains)."""
    return key.startswith(DECODER_PREFIX) and is_medsa_key(key)


def freeze_for_parts(model: nn.Module, parts: str) -> nn.Module:
    """Set ``requires_grad``: every Med-SA part (``all``) or the decoder's only (``decoder``).

    The backbone is frozen in both cases; returns ``model``.
    """
    if parts not in ("all", "decoder"):
        raise ValueError(f"unknown trainable parts {parts!r}")
    keep = is_medsa_key if parts == "all" else is_decoder_medsa_key
    for name, param in model.named_parameters():
        param.requires_grad_(keep(name))
    return model


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is installed with napari
        return None
    return tqdm(total=total, desc="embedding slices", unit="slice")


@torch.no_grad()
def cache_embeddings(
    model: nn.Module,
    data: TrainingSet,
    device: torch.device,
    batch_size: int = 8,
    storage: torch.dtype = torch.float32,
    progress: bool = False,
    backend: str = "auto",
    precision: str = "auto",
) -> int:
    """Replace every preprocessed slice of ``data`` by its image embedding, in place.

    Parameters
    ----------
    model : MedSAModel
        Its encoder is run in eval mode with no click maps and depth 1 (what the
        engine's click-free embedding is); its training mode is restored after.
    data : TrainingSet
        ``data.images`` go from (3, S, S) model inputs to (C, h, w) embeddings
        (``data.embedded`` becomes True); ``data.image(case)`` then returns them
        as float32.
    device : torch.device
    batch_size : int
        Slices per encoder call.
    storage : torch.dtype
        Dtype the embeddings are kept in on the CPU (float16 halves the memory).
    progress : bool
        Show a tqdm bar.
    backend, precision : str
        The encoder's backend (:func:`napari_medsam.model.backends.make_encoder_backend`):
        ``auto`` runs OpenVINO on a CPU where it is installed (bf16 where the CPU
        has it), torch elsewhere. The encoder is frozen here, so converting it once
        is exact.

    Returns
    -------
    int
        Number of slices embedded (each exactly once).
    """
    if data.embedded:
        raise ValueError("the training set already holds image embeddings")
    encoder = model.image_encoder
    was_training = [m.training for m in encoder.modules()]
    encoder.eval()
    run = make_encoder_backend(
        encoder, device, data.spec.side, backend, precision, background=False
    )
    if hasattr(run, "prepare"):
        run.prepare()
    logger.info("embedding %d slices with %s", len(data.images), run.describe())
    bar = _progress(len(data.images), progress)
    try:
        for start in range(0, len(data.images), batch_size):
            stop = min(start + batch_size, len(data.images))
            batch = torch.stack([im.float() for im in data.images[start:stop]]).to(device)
            embeddings = run(batch, None, 1).to("cpu", storage)
            for j in range(stop - start):
                data.images[start + j] = embeddings[j].clone()
            if bar is not None:
                bar.update(stop - start)
    finally:
        for module, mode in zip(encoder.modules(), was_training, strict=True):
            module.training = mode
        if bar is not None:
            bar.close()
    data.embedded = True
    n_bytes = sum(t.numel() * t.element_size() for t in data.images)
    logger.info("cached %d slice embeddings (%.0f MiB)", len(data.images), n_bytes / 2**20)
    return len(data.images)
