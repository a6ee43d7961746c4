"""The click engine: bundled LiteMedSAM for boxes, the trained click decoder for clicks.

:class:`ClickEngine` is a :class:`~napari_medsam.model.sam_engine.SamEngine` on the
bundled LiteMedSAM (same preprocessing, image encoder and embedding cache):

- a prompt that is a box alone goes to the bundled prompt encoder and mask
  decoder, untouched, so its mask is bit for bit the bundled model's;
- a prompt with clicks or previous logits goes to the :class:`ClickDecoder`, whose
  mask decoder runs on the engine's backend: OpenVINO fp32 on a CPU when installed
  (52.2 ms a click against torch fp32's 71.4, 1.37x, quiet machine, 2 threads, 20
  runs; logits within 1e-5), else torch. The box path stays on
  torch, so it remains the bundled model's, bit for bit;
- with **zoom-in** on (the default, ``prompts.zoom.ZOOM_IN_BY_DEFAULT``), once a slice
  has a previous prediction, the next one is made on the whole slice and, for a small
  object (crop side under 0.4 of the slice), also on a square crop around the previous
  mask, the new one and the clicks (expanded 1.6x, at least 48 px), re-embedded at the
  model's input size; the crop's mask is pasted into the slice's. The crop is kept
  while the object stays inside it; crop embeddings are cached like slice ones.
  Held out (v5, 36 cases, against off): NoC@85 10.28 -> 10.06, NoC@90 13.53 -> 13.64,
  box + 3 clicks 0.729 -> 0.741, cases worse at click 5 than 1 3 -> 1 (model card).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable
from typing import Any

import numpy as np
import torch

from napari_medsam.model.backends.openvino_decoder import make_decoder_backend
from napari_medsam.model.click.decoder import ClickDecoder
from napari_medsam.model.device import torch_threads
from napari_medsam.model.sam_engine import SamEngine
from napari_medsam.model.prompt_inputs import as_slice_yx, prompt_tensors
from napari_medsam.prompts import zoom
from napari_medsam.prompts.progressive import click_to_lowres_rc, merge_click_region
from napari_medsam.prompts.geometry import (
    RESIZE_STRETCH,
    lowres_logits_to_slice,
    resize_bilinear,
)
from napari_medsam.prompts.lowres_mask import lowres_logits_to_mask
from napari_medsam.types import SlicePrediction, SlicePrompt


def is_box_only(prompt: SlicePrompt) -> bool:
    """A box with no clicks and no previous logits (the bundled model's own prompt)."""
    return (
        prompt.box_yxyx is not None
        and len(prompt.points_yx) == 0
        and prompt.prev_logits_lowres is None
    )


class ClickEngine(SamEngine):
    """Engine protocol implementation: LiteMedSAM + a trained click decoder.

    Parameters
    ----------
    model : nn.Module
        The bundled LiteMedSAM (image encoder, prompt encoder, mask decoder).
    config : ModelConfig
        Its configuration (stretch resize).
    click_decoder : ClickDecoder
    zoom_in : bool
        Predict corrections on a crop around the object (module docstring).
    merge_from_click : int
        From this many clicks on (with a previous prediction), a corrective
        click changes only the connected region of change that holds it
        (FocalClick's progressive merge, :mod:`napari_medsam.prompts.progressive`);
        the newest click is the last point of the prompt. 0 turns it off.
    **kwargs
        ``device``, ``cache_bytes``, ``name``, ``backend``, ``precision``,
        ``background`` as for :class:`SamEngine`. ``backend`` also chooses where
        the click decoder's mask decoder runs (always fp32); ``background``
        converts it on a thread started here, torch answering until it is ready.
    """

    #: Propagation prompts each slice with the previous mask's box alone (the bundled
    #: decoder), not with the previous mask as the dense prompt (the click decoder):
    #: ``benchmarks/sweep_propagation.py --modes none,logits`` with this engine, a seeded
    #: loose box, the default 0.85 / 0.6 stop rule, 3D Dice box-only vs logits: lung1 5 mm
    #: .688 / .515, brain2 6.5 mm .527 / .527, t2s 7.5 mm .247 / .077, STS_002 3.3 mm
    #: .847 / .186, STS_003 .825 / .148, ``totalseg_ct_full`` 3 mm spleen .951 / .097,
    #: kidney R .894 / .140 (box only equals the bundled model's figures bit for bit).
    #: The decoder's IoU head scores mask-prompted
    #: slices low (0.5-0.8), and its masks stick to the previous one past the object's end
    #: (overlap 0.8-0.95 on empty slices), so no replayed stop rule lets logits win:
    #: best rule per mode, thick (>= 5 mm) .487 / .463, thin .865 / .772 (see
    #: :mod:`napari_medsam.tasks.stop_rules`).
    propagation_mask_prompt = "none"

    def __init__(
        self,
        model,
        config,
        click_decoder: ClickDecoder,
        zoom_in: bool = False,
        merge_from_click: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, config, **kwargs)
        self.merge_from_click = int(merge_from_click)
        self.needs_box = False  # clicks alone segment: the capability the dock reads
        self.click_decoder = click_decoder.to(self.device).eval()
        pe = self.click_decoder.prompt_encoder
        self.click_decoder_backend = make_decoder_backend(
            self.click_decoder.mask_decoder,
            self.device,
            (int(pe.embed_dim), *(int(v) for v in pe.image_embedding_size)),
            kwargs.get("backend", "auto"),
            background=kwargs.get("background", True),
        )
        if kwargs.get("background", True) and hasattr(self.click_decoder_backend, "prepare"):
            self.click_decoder_backend.prepare(wait=False)  # ready before the first click
        self.zoom_in = bool(zoom_in) and self.spec.resize == RESIZE_STRETCH
        self._zoom_lock = threading.Lock()
        # cache key -> (crop, returned low-res logits, crop-frame logits, returned (H, W) logits)
        self._zoom_state: dict[Hashable, tuple[np.ndarray, ...]] = {}

    @property
    def click_backend(self) -> str:
        """Where the click decoder's mask decoder runs, e.g. ``"openvino fp32"``."""
        return f"{getattr(self.click_decoder_backend, 'backend', 'torch')} fp32"

    def warm_up(self) -> None:
        """As :meth:`SamEngine.warm_up`, and the click decoder's conversion and one click."""
        super().warm_up()
        prepare = getattr(self.click_decoder_backend, "prepare", None)
        if prepare is not None:
            prepare(wait=True)
        side = self.image_size
        click = SlicePrompt(points_yx=np.array([[side / 2, side / 2]], np.float32),
                            point_labels=np.array([1], np.int64))  # fmt: skip
        self.predict(np.zeros((side, side), np.float32), click)

    def _decode_clicks(self, embedding: torch.Tensor, prompt: SlicePrompt, hw) -> tuple:
        points, boxes, masks, _ = prompt_tensors(
            prompt, hw, self.image_size, self.device, self.spec.resize, self.lowres_side, False
        )
        with torch.inference_mode(), self._lock, self._torch_threads_around_fast_decoder():
            lowres, iou = self.click_decoder(
                embedding, points, boxes, masks, mask_decoder=self.click_decoder_backend
            )
        return lowres[0, 0].float().cpu().numpy().copy(), float(iou[0, 0])

    def _torch_threads_around_fast_decoder(self):
        """One torch thread for the small torch ops of a click when the mask decoder is fast.

        The prompt encoder and the click-map stem are ~100 small torch ops; with 2
        OpenMP threads each one pays a barrier, and the idle OpenMP thread then spins
        for a few ms into the OpenVINO inference that follows (CPU burnt in a 200 ms
        sleep after a torch op: 4-9 ms; after an OpenVINO inference: < 1 ms). Measured
        interleaved, one process, 30 + 30 predicts on a cached phantom slice (3 clicks
        and previous logits), machine shared: 245 -> 188 ms median, CPU 243 -> 181 ms.
        The torch fallback (conversion not ready) keeps every thread.
        """
        ready = getattr(self.click_decoder_backend, "ready", None)
        if self.device.type == "cpu" and ready is not None and ready():
            return torch_threads(1)
        return contextlib.nullcontext()

    def predict(
        self, image_yx: np.ndarray, prompt: SlicePrompt, cache_key: Hashable | None = None
    ) -> SlicePrediction:
        """Segment one object on one slice (see :meth:`SamEngine.predict`).

        Box-only prompts give the bundled model's mask exactly; any prompt with
        clicks or previous logits runs the click decoder, zoomed in when
        ``zoom_in`` is on and the slice already has a prediction.
        """
        if len(prompt.points_yx) == 0 and prompt.prev_logits_lowres is None:
            return super().predict(image_yx, prompt, cache_key)  # a box alone, or empty
        image = as_slice_yx(image_yx)
        hw = image.shape
        if self.zoom_in and prompt.prev_logits_lowres is not None:
            kept = self._predict_in_kept_crop(image, prompt, cache_key)
            if kept is not None:
                return kept
        logits, score = self._decode_clicks(self._embedding(image, cache_key), prompt, hw)
        if self.zoom_in and prompt.prev_logits_lowres is not None:
            zoomed = self._predict_zoomed(image, prompt, cache_key, logits)
            if zoomed is not None:
                return zoomed
        logits = self._merged(prompt, logits, hw)
        # upsampled only where the mask can be (the full 512 x 512 resample cost ~30 ms a click)
        mask_yx = lowres_logits_to_mask(logits, hw, self.image_size, self.spec.resize)
        return SlicePrediction(mask_yx=mask_yx, logits_lowres=logits, score=score)

    def _merged(self, prompt: SlicePrompt, logits: np.ndarray, hw) -> np.ndarray:
        """(S, S) logits after the progressive merge of the newest click, when it applies."""
        n_points = len(prompt.points_yx)
        if not self.merge_from_click or prompt.prev_logits_lowres is None:
            return logits
        if n_points == 0 or n_points < self.merge_from_click:
            return logits
        click_rc = click_to_lowres_rc(
            prompt.points_yx[-1], hw, self.image_size, self.lowres_side, self.spec.resize
        )
        positive = bool(np.asarray(prompt.point_labels)[-1] > 0)
        return merge_click_region(prompt.prev_logits_lowres, logits, click_rc, positive)

    def _crop_prev_logits(self, prompt: SlicePrompt, crop, hw, cache_key) -> np.ndarray:
        side = self.lowres_side
        with self._zoom_lock:
            state = self._zoom_state.get(cache_key)
        if state is not None and np.array_equal(state[0], crop):
            if np.array_equal(state[1], prompt.prev_logits_lowres):
                return state[2]
        full = lowres_logits_to_slice(prompt.prev_logits_lowres, hw, self.image_size, RESIZE_STRETCH)
        y0, x0, y1, x1 = (int(v) for v in crop)
        return resize_bilinear(full[y0:y1, x0:x1], (side, side)).astype(np.float32)

    def _predict_zoomed(
        self, image: np.ndarray, prompt: SlicePrompt, cache_key: Hashable | None,
        slice_lowres: np.ndarray,
    ) -> SlicePrediction | None:
        """The prediction on a crop around the object, pasted into the whole slice's.

        ``slice_lowres`` (S, S) is the whole slice's prediction for the same prompt: with
        the previous mask and the clicks it places the crop, and it gives the mask outside
        the crop (before, outside was background, and an under-segmented object could
        never grow past the crop). None when the crop would gain no resolution.
        """
        hw = image.shape
        either_lowres = (np.asarray(prompt.prev_logits_lowres) > 0) | (slice_lowres > 0)
        region = zoom.lowres_region_yxyx(either_lowres, prompt.points_yx, hw)
        if region is None:
            return None
        if prompt.box_yxyx is not None:
            box = np.asarray(prompt.box_yxyx, np.float64)
            region = np.concatenate([np.minimum(region[:2], box[:2]), np.maximum(region[2:], box[2:])])
        with self._zoom_lock:
            state = self._zoom_state.get(cache_key)
        crop = zoom.keep_or_new_crop(None if state is None else state[0], region, hw)
        if not zoom.worth_zooming(crop, hw):
            return None  # decided at low res: a large object costs no upsampling here
        slice_full = lowres_logits_to_slice(slice_lowres, hw, self.image_size, RESIZE_STRETCH)
        crop_logits, crop_up, score = self._decode_crop(image, prompt, crop, cache_key)
        return self._pasted(crop, crop_logits, crop_up, slice_full, cache_key, score)

    def _predict_in_kept_crop(
        self, image: np.ndarray, prompt: SlicePrompt, cache_key: Hashable | None
    ) -> SlicePrediction | None:
        """A correction inside the crop of this slice's last zoomed prediction, or None.

        When the prompt continues from that prediction, the crop is kept for the previous
        mask and the clicks, and the crop's new mask stays off the crop's edges, the whole
        slice is not decoded again: outside the crop the last prediction stays (one decoder
        pass instead of two). Otherwise None, and the full zoomed path runs.
        """
        with self._zoom_lock:
            state = self._zoom_state.get(cache_key) if cache_key is not None else None
        if state is None or not np.array_equal(state[1], prompt.prev_logits_lowres):
            return None
        hw = image.shape
        region = zoom.lowres_region_yxyx(np.asarray(prompt.prev_logits_lowres) > 0, prompt.points_yx, hw)
        if region is None or prompt.box_yxyx is not None:
            return None
        crop = state[0]
        if not np.array_equal(zoom.keep_or_new_crop(crop, region, hw), crop):
            return None
        crop_logits, crop_up, score = self._decode_crop(image, prompt, crop, cache_key)
        if zoom.touches_inner_edge(crop_up > 0, crop, hw):
            return None  # the object may reach past the crop: the whole slice decides
        return self._pasted(crop, crop_logits, crop_up, state[3], cache_key, score)

    def _decode_crop(self, image, prompt: SlicePrompt, crop, cache_key) -> tuple:
        """(S, S) crop logits, (h, w) crop logits on the slice's pixels, score."""
        hw = image.shape
        y0, x0, y1, x1 = (int(v) for v in crop)
        crop_image = np.ascontiguousarray(image[y0:y1, x0:x1])
        crop_key = None if cache_key is None else (cache_key, "zoom", y0, x0, y1, x1)
        crop_prompt = SlicePrompt(
            points_yx=zoom.points_to_crop(prompt.points_yx, crop),
            point_labels=np.asarray(prompt.point_labels),
            box_yxyx=zoom.box_to_crop(prompt.box_yxyx, crop),
            prev_logits_lowres=self._crop_prev_logits(prompt, crop, hw, cache_key),
        )
        crop_hw = crop_image.shape
        crop_logits, score = self._decode_clicks(
            self._embedding(crop_image, crop_key), crop_prompt, crop_hw
        )
        crop_up = lowres_logits_to_slice(crop_logits, crop_hw, self.image_size, RESIZE_STRETCH)
        return crop_logits, crop_up, score

    def _pasted(self, crop, crop_logits, crop_up, outside_full, cache_key, score) -> SlicePrediction:
        """The crop's logits pasted into ``outside_full`` (H, W); the zoom state kept."""
        full_logits = zoom.paste_crop(crop_up, crop, outside_full.shape, outside_full)
        side = self.lowres_side
        lowres_full = resize_bilinear(full_logits, (side, side)).astype(np.float32)
        if cache_key is not None:
            with self._zoom_lock:
                self._zoom_state[cache_key] = (crop, lowres_full, crop_logits, full_logits)
        return SlicePrediction(mask_yx=full_logits > 0, logits_lowres=lowres_full, score=score)

    def clear_cache(self) -> None:
        """Forget every cached embedding and zoom crop."""
        super().clear_cache()
        with self._zoom_lock:
            self._zoom_state.clear()
