"""The SAM-family engine: embed a slice once, predict many prompts on it.

:class:`SamEngine` implements :class:`napari_medsam.model.protocol.Engine` for any
module with SAM's ``image_encoder`` / ``prompt_encoder`` / ``mask_decoder``
(LiteMedSAM, SAM ViT-B/L/H, smaller SAM ViTs); the click and Med-SA engines build
on it. :func:`load_sam_engine` makes one from a state dict; which loader a
checkpoint file needs is decided above all engines, in :mod:`napari_medsam.model.engine`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Hashable, Sequence

import numpy as np
import torch
from torch import nn

from napari_medsam.model.backends import make_encoder_backend
from napari_medsam.model.checkpoints import CheckpointError, state_dict_mismatch
from napari_medsam.model.device import choose_device
from napari_medsam.model.embedding_cache import DEFAULT_CACHE_BYTES, CacheInfo, EmbeddingCache
from napari_medsam.model.preprocess import preprocess_slices
from napari_medsam.model.prompt_inputs import as_slice_yx, prompt_tensors
from napari_medsam.model.registry import ModelConfig, build_model
from napari_medsam.model.sanity import check_engine_forward
from napari_medsam.prompts.lowres_mask import lowres_logits_to_mask
from napari_medsam.types import SlicePrediction, SlicePrompt

logger = logging.getLogger(__name__)


class SamEngine:
    """Embed once per slice, predict many times, with a byte-bounded embedding cache.

    Parameters
    ----------
    model : nn.Module
        SAM-like module (``image_encoder``, ``prompt_encoder``, ``mask_decoder``).
    config : ModelConfig
        Its configuration; ``config.input_spec`` defines the preprocessing.
    device : str or torch.device
        Resolved with :func:`choose_device`.
    cache_bytes : int
        Bound of the embedding cache in bytes (one 256 x 64 x 64 float32
        embedding is 4 MiB). 0 disables caching.
    name : str, optional
        Shown to the user; defaults to ``config.name``.
    backend : str
        Image-encoder backend: ``auto`` (OpenVINO on a CPU when installed, else
        torch), ``torch`` or ``openvino``; see :mod:`napari_medsam.model.backends`.
    precision : str
        ``auto`` (bf16 where the CPU has it), ``bf16`` or ``fp32``; OpenVINO only.
    background : bool
        Convert the encoder for OpenVINO on a background thread (torch answers
        until it is ready) instead of in the first request.

    Notes
    -----
    Output masks are single masks. SAM's three-mask output is requested only for
    an unambiguous-looking prompt that is in fact ambiguous: exactly one click,
    no box and no previous logits. Then the mask with the highest predicted IoU
    is returned, as SAM's authors recommend for single clicks. Any other
    prompt uses the single-mask output token.

    The engine is meant to be driven from one worker thread at a time; a lock
    around cache and model calls keeps concurrent use correct, just serialised.
    """

    def __init__(
        self,
        model: nn.Module,
        config: ModelConfig,
        device: str | torch.device = "auto",
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        name: str | None = None,
        backend: str = "auto",
        precision: str = "auto",
        background: bool = True,
    ) -> None:
        self.device = choose_device(device)
        self.model = model.to(self.device).eval()  # eval after the weights: TinyViT caches biases
        self.encoder_backend = make_encoder_backend(
            self.model.image_encoder,
            self.device,
            config.input_spec.side,
            backend,
            precision,
            background=background,
        )
        # fp32 decoder: with a bf16 decoder too, shared-data organs missed the agreement bar
        # (mean Dice 0.985, worst slice 0.926 vs torch); "bf16" here turns it back on
        self.decoder_precision = "fp32"
        self.config = config
        self.spec = config.input_spec
        self.name = name or config.name
        self.image_size = self.spec.side
        self.needs_box = self.spec.needs_box  # box-only training (capability flag)
        self.cache = EmbeddingCache(cache_bytes)
        self._lock = threading.RLock()

    @property
    def lowres_side(self) -> int:
        """Side of the low-res logits and of ``mask_input`` (256 for released models)."""
        return int(self.model.prompt_encoder.mask_input_size[0])

    def _decoder_autocast(self):
        """bf16 autocast for prompt encoder + decoder on a bf16 CPU with the fast backend.

        The torch backend stays the fp32 reference end to end.
        """
        if self.decoder_precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def backend(self) -> str:
        """The image encoder's backend and precision, e.g. ``"openvino bf16"``."""
        impl = self.encoder_backend
        return f"{impl.backend} {impl.precision}"

    def cache_info(self) -> CacheInfo:
        """Hits, misses, entries and bytes of the embedding cache."""
        return self.cache.info()

    def clear_cache(self) -> None:
        """Forget every cached embedding."""
        self.cache.clear()

    @torch.inference_mode()
    def _encode(self, images_yx: Sequence[np.ndarray]) -> torch.Tensor:
        batch = preprocess_slices(images_yx, self.spec, self.device)
        with self._lock:
            return self.encoder_backend(batch)

    def _embedding(self, image_yx: np.ndarray, cache_key: Hashable | None) -> torch.Tensor:
        hw = tuple(image_yx.shape)
        if cache_key is not None:
            cached = self.cache.get(cache_key, hw)
            if cached is not None:
                return cached
        embedding = self._encode([image_yx])
        if cache_key is not None:
            self.cache.put(cache_key, hw, embedding)
        return embedding

    def embed(self, image_yx: np.ndarray, cache_key: Hashable | None = None) -> None:
        """Compute (or find in the cache) one slice's embedding.

        Parameters
        ----------
        image_yx : np.ndarray
            (H, W) float32 slice windowed to [0, 1].
        cache_key : hashable, optional
            Identity of the slice content; None computes without caching.
        """
        self._embedding(as_slice_yx(image_yx), cache_key)

    def embed_batch(
        self,
        images_yx: Sequence[np.ndarray],
        cache_keys: Sequence[Hashable],
        batch_size: int = 4,
    ) -> None:
        """Embed several slices in batched encoder calls and cache them.

        Parameters
        ----------
        images_yx : sequence of np.ndarray
            (H, W) float32 slices windowed to [0, 1] (shapes may differ).
        cache_keys : sequence of hashable
            One key per slice; slices already cached are skipped.
        batch_size : int
            Slices per encoder call.
        """
        if len(images_yx) != len(cache_keys):
            raise ValueError(f"{len(images_yx)} images but {len(cache_keys)} cache keys")
        images = [as_slice_yx(im) for im in images_yx]
        todo = [i for i, key in enumerate(cache_keys) if key not in self.cache]
        for start in range(0, len(todo), max(1, batch_size)):
            chunk = todo[start : start + max(1, batch_size)]
            embeddings = self._encode([images[i] for i in chunk])
            with torch.inference_mode():  # own memory per entry, so eviction frees it
                for j, i in enumerate(chunk):
                    self.cache.put(cache_keys[i], images[i].shape, embeddings[j : j + 1].clone())

    def warm_up(self) -> None:
        """Finish the fast-path conversion and run one blank slice through the model.

        Called on a worker before the app says "ready": a first conversion for
        OpenVINO (tens of seconds, once per machine) and the first inference's set-up
        happen here, so the user's first prompt takes the usual per-slice time.
        Caches nothing.
        """
        prepare = getattr(self.encoder_backend, "prepare", None)
        if prepare is not None:
            prepare(wait=True)
        side = self.image_size
        box_yxyx = np.array([side // 4, side // 4, 3 * side // 4, 3 * side // 4], np.float32)
        self.predict(np.zeros((side, side), np.float32), SlicePrompt(box_yxyx=box_yxyx))

    def predict(
        self, image_yx: np.ndarray, prompt: SlicePrompt, cache_key: Hashable | None = None
    ) -> SlicePrediction:
        """Segment one object on one slice from clicks, a box and/or previous logits.

        Parameters
        ----------
        image_yx : np.ndarray
            (H, W) float32 slice windowed to [0, 1].
        prompt : SlicePrompt
            Points (N, 2) (row, col) with labels 1/0, box (y0, x0, y1, x1), and
            ``prev_logits_lowres`` (``lowres_side`` square) fed as SAM's ``mask_input``.
        cache_key : hashable, optional
            Embedding cache key (see :meth:`embed`).

        Returns
        -------
        SlicePrediction
            ``mask_yx`` (H, W) bool, ``logits_lowres`` float32 copy, ``score``
            the predicted IoU.

        Raises
        ------
        ValueError
            An empty prompt (no point, no box, no previous logits) or bad shapes.
        """
        image = as_slice_yx(image_yx)
        hw, side = image.shape, self.image_size
        points, boxes, masks, multimask = prompt_tensors(
            prompt,
            hw,
            side,
            self.device,
            self.spec.resize,
            self.lowres_side,
            self.spec.multimask_single_click,
        )

        embedding = self._embedding(image, cache_key)
        with torch.inference_mode(), self._lock, self._decoder_autocast():
            # With no box, SAM's prompt encoder appends its padding point itself.
            sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
            lowres, iou = self.model.mask_decoder(
                image_embeddings=embedding,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        best = int(torch.argmax(iou[0])) if multimask else 0
        logits = lowres[0, best].float().cpu().numpy().copy()
        score = float(iou[0, best])
        mask_yx = lowres_logits_to_mask(logits, hw, side, self.spec.resize)  # only where it can be
        return SlicePrediction(mask_yx=mask_yx, logits_lowres=logits, score=score)


def load_state_strict(model: nn.Module, state_dict: dict, source: str) -> None:
    """Load weights strictly, turning key or shape mismatches into a CheckpointError."""
    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the model; " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def load_sam_engine(
    state: dict,
    config: ModelConfig,
    source: str,
    device: str | torch.device = "auto",
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    **options,
) -> SamEngine:
    """A :class:`SamEngine` of ``config`` with the weights ``state``, checked.

    Parameters
    ----------
    state : dict
        Parameter name -> tensor, loaded strictly.
    config : ModelConfig
    source : str
        The file's name, for messages.
    device : str or torch.device
    cache_bytes : int
    **options
        ``backend``, ``precision``, ``background`` of :class:`SamEngine`.

    Raises
    ------
    CheckpointError
        Weights that do not fit strictly, or a forward pass that is not finite.
    """
    model = build_model(config)
    load_state_strict(model, state, source)
    engine = SamEngine(model, config, device=device, cache_bytes=cache_bytes, **options)
    check_engine_forward(engine, source)  # finite logits on a tiny slice, or refused
    return engine
