"""The Med-SA engine for the app: clicks feed the click maps and SAM's point prompts.

:class:`MedSAEngine` is a :class:`napari_medsam.model.sam_engine.SamEngine` (same
preprocessing, prompt conversion, decoding, post-processing and cache) whose
image embedding may depend on the prompt:

- A click embedding whose weights are all zero (a fresh or ``convert``ed model)
  cannot change the embedding, so the slice's click-free embedding is cached and
  reused exactly as in SamEngine.
- A trained click embedding makes the embedding depend on the clicks and the
  previous mask: every prediction re-runs the encoder blocks on the slice with
  its click maps (nothing cached). Caching the patch tokens before the first
  block would save only the patch embedding (a few % of the encoder's work) at
  12-16 MiB per slice, so they are recomputed instead. This costs a full
  encoder pass per click: ~0.1-0.3 s for LiteMedSAM on a CPU, seconds for ViT-B.

:meth:`MedSAEngine.predict_stack` runs a slab of D slices through the encoder
together (SD-Trans; each slice's embedding depends on its neighbours), caching
per stack, then decodes one prompt per slice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_medsam.model.embedding_cache import DEFAULT_CACHE_BYTES
from napari_medsam.model.sam_engine import SamEngine
from napari_medsam.model.medsa.build import backbone_spec
from napari_medsam.model.medsa.model import MedSAModel
from napari_medsam.model.preprocess import preprocess_slices
from napari_medsam.model.prompt_inputs import as_slice_yx
from napari_medsam.prompts.clickmaps import click_maps
from napari_medsam.types import SlicePrediction, SlicePrompt

logger = logging.getLogger(__name__)


def medsa_parts_trained(model: torch.nn.Module) -> bool:
    """Whether any zero-initialised Med-SA weight (adapter up-projections, HyP-Adpt,
    click embedding) is non-zero: the model was fine-tuned."""
    from napari_medsam.model.medsa.config import is_medsa_key

    for key, value in model.state_dict().items():
        if not is_medsa_key(key) or not value.is_floating_point():
            continue
        last = key.split(".")
        zero_init = "up" in last or ("proj" in last and "click" in key)
        if zero_init and bool(value.detach().abs().sum() > 0):
            return True
    return False


class MedSAEngine(SamEngine):
    """Engine protocol implementation for a :class:`MedSAModel`.

    Parameters
    ----------
    model : MedSAModel
    device : str or torch.device
    cache_bytes : int
        Bound of the embedding cache.
    name : str, optional
        Defaults to "Med-SA (<backbone name>)".
    backend, precision, background
        The image encoder's backend (click maps and slabs included); see
        :class:`napari_medsam.model.sam_engine.SamEngine`.
    """

    def __init__(
        self,
        model: MedSAModel,
        device: str | torch.device = "auto",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        name: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        background: bool = True,
    ) -> None:
        spec = backbone_spec(model.config.backbone)
        super().__init__(
            model,
            spec.model_config,
            device=device,
            cache_bytes=cache_bytes,
            name=name or f"Med-SA ({spec.model_config.name})",
            backend=backend,
            precision=precision,
            background=background,
        )
        embed = model.image_encoder.medsa_click_embed
        self.clicks_change_embedding = embed is not None and any(
            bool(p.detach().abs().sum() > 0) for p in embed.parameters()
        )
        # A fresh Med-SA computes exactly its backbone's output (every part starts at
        # zero), so it needs a box where the backbone does; trained parts were trained
        # with clicks (Med-SA fine-tuning simulates them), so clicks then work.
        self.needs_box = self.spec.needs_box and not medsa_parts_trained(model)
        # the embedding of the current _predict_with call, per thread
        self._override = threading.local()

    @property
    def slab_depth(self) -> int:
        """Slices per slab for :meth:`predict_stack` (1 without SD-Trans)."""
        return self.model.config.depth if self.model.config.sd_trans else 1

    def click_maps_tensor(self, images_yx: Sequence[np.ndarray], prompts: Sequence[SlicePrompt]):
        """(N, 3, S, S) click maps (positive, negative, previous mask) on the engine's device."""
        side = self.image_size
        maps = []
        for image, prompt in zip(images_yx, prompts, strict=True):
            prev_model = None
            if prompt.prev_logits_lowres is not None:
                prev = torch.as_tensor(np.asarray(prompt.prev_logits_lowres, np.float32))[
                    None, None
                ]
                prev_model = F.interpolate(prev, size=(side, side), mode="bilinear")[0, 0] > 0
                prev_model = prev_model.numpy()
            maps.append(
                click_maps(
                    prompt.points_yx,
                    prompt.point_labels,
                    image.shape,
                    side,
                    prev_model,
                    resize=self.spec.resize,
                )
            )
        return torch.as_tensor(np.stack(maps), device=self.device)

    def _embedding(self, image_yx: np.ndarray, cache_key: Hashable | None) -> torch.Tensor:
        override = getattr(self._override, "embedding", None)
        if override is not None:
            return override
        return super()._embedding(image_yx, cache_key)

    def _predict_with(self, image: np.ndarray, prompt: SlicePrompt, embedding: torch.Tensor):
        self._override.embedding = embedding
        try:
            return super().predict(image, prompt, None)
        finally:
            self._override.embedding = None

    @torch.inference_mode()
    def _encode_stack(
        self, images: Sequence[np.ndarray], maps: torch.Tensor | None, depth: int
    ) -> torch.Tensor:
        batch = preprocess_slices(images, self.spec, self.device)
        with self._lock:
            return self.encoder_backend(batch, maps, depth)

    def predict(
        self, image_yx: np.ndarray, prompt: SlicePrompt, cache_key: Hashable | None = None
    ) -> SlicePrediction:
        """As :meth:`SamEngine.predict`; with a trained click embedding the clicks also
        enter the encoder as click maps (the embedding is then not cached)."""
        image = as_slice_yx(image_yx)
        has_clicks = len(prompt.points_yx) > 0 or prompt.prev_logits_lowres is not None
        if not (self.clicks_change_embedding and has_clicks):
            return super().predict(image, prompt, cache_key)
        maps = self.click_maps_tensor([image], [prompt])
        return self._predict_with(image, prompt, self._encode_stack([image], maps, 1))

    def predict_stack(
        self,
        images_yx: Sequence[np.ndarray],
        prompts: Sequence[SlicePrompt],
        cache_key: Hashable | None = None,
    ) -> list[SlicePrediction | None]:
        """Segment one object on a slab of consecutive slices encoded together.

        Parameters
        ----------
        images_yx : sequence of np.ndarray
            D (H, W) float32 slices windowed to [0, 1], in slice order, one shape.
            D <= ``model.config.depth`` when the model has SD-Trans.
        prompts : sequence of SlicePrompt
            One per slice; an empty prompt gives None for that slice.
        cache_key : hashable, optional
            Identity of the slab (volume, z range, window): the slab's click-free
            embeddings are cached under it, as one entry.

        Returns
        -------
        list of SlicePrediction or None
        """
        images = [as_slice_yx(im) for im in images_yx]
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} slices but {len(prompts)} prompts")
        if len({im.shape for im in images}) > 1:
            raise ValueError("the slices of a slab must have one shape")
        depth = len(images) if self.model.config.sd_trans else 1
        if depth > self.model.config.depth:
            raise ValueError(
                f"slab of {depth} slices exceeds the model's depth {self.model.config.depth}"
            )
        any_clicks = any(len(p.points_yx) or p.prev_logits_lowres is not None for p in prompts)
        if self.clicks_change_embedding and any_clicks:
            embeddings = self._encode_stack(images, self.click_maps_tensor(images, prompts), depth)
        else:
            hw = (len(images), *images[0].shape)
            embeddings = self.cache.get(cache_key, hw) if cache_key is not None else None
            if embeddings is None:
                embeddings = self._encode_stack(images, None, depth)
                if cache_key is not None:
                    self.cache.put(cache_key, hw, embeddings)
        return [
            None
            if prompt.is_empty and prompt.prev_logits_lowres is None
            else self._predict_with(image, prompt, embeddings[i : i + 1])
            for i, (image, prompt) in enumerate(zip(images, prompts, strict=True))
        ]


def load_medsa_engine(
    source: str | Path | Mapping[str, Any],
    device: str | torch.device = "auto",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    backbone_checkpoint: str | Path | None = None,
    backend: str = "auto",
    precision: str = "auto",
    background: bool = True,
) -> MedSAEngine:
    """Build a :class:`MedSAEngine` from a Med-SA checkpoint (file or loaded dict).

    Used by :func:`napari_medsam.model.engine.load_engine` when the file's kind is "medsa".

    Raises
    ------
    napari_medsam.model.medsa.config.MedSAError
        Not a Med-SA checkpoint, or backbone weights missing / not matching.
    """
    from napari_medsam.model.medsa.checkpoint import load_medsa

    model = load_medsa(source, backbone_checkpoint)
    engine = MedSAEngine(
        model,
        device=device,
        cache_bytes=cache_bytes,
        backend=backend,
        precision=precision,
        background=background,
    )
    logger.info("loaded %s on %s", engine.name, engine.device)
    return engine
