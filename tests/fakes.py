"""A numpy-only engine for widget, worker and task tests.

It satisfies :class:`napari_medsam.model.protocol.Engine`, records every
prompt it receives (with the thread it ran on) and answers from a ground-truth
label volume, so a test can check both what reached the model and what got
painted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from napari_medsam.types import SlicePrediction, SlicePrompt

LOWRES = 256


@dataclass(frozen=True)
class Call:
    """One call the fake engine received."""

    method: str  # "embed" or "predict"
    image_shape: tuple[int, ...]
    image_range: tuple[float, float]
    prompt: SlicePrompt | None
    cache_key: object
    thread: str


class FakeEngine:
    """Answers with the ground-truth organ the prompt points at.

    Parameters
    ----------
    truth_zyx : np.ndarray, optional
        (Z, Y, X) integer labels. The slice comes from the cache key's ``z``.
        The organ is the truth label under the first positive click, else the most
        common non-zero label inside the box; the mask is that organ on the slice,
        cut to the box when there is one. Without truth: the box itself, or disks
        of radius 3 around the positive clicks.
    block_first : threading.Event, optional
        The first ``predict`` waits (up to 20 s) until this event is set.
    error : Exception, optional
        ``predict`` raises it.
    keep_prompts : bool
        Record each call's prompt (default). A flood of clicks on one slice makes
        prompt ``k`` hold ``k`` clicks, so keeping them all grows as the square of the
        clicks: the load test records the calls without their prompts.
    """

    name = "FakeEngine"
    image_size = 256

    def __init__(self, truth_zyx=None, block_first=None, error=None, keep_prompts=True):
        self.truth_zyx = truth_zyx
        self.keep_prompts = keep_prompts
        self.block_first = block_first
        self.error = error
        self.calls: list[Call] = []
        self.predict_started = threading.Event()
        self._lock = threading.Lock()
        self._n_predict = 0

    # -- Engine protocol
    def embed(self, image_yx, cache_key=None):
        self._record("embed", image_yx, None, cache_key)

    def predict(self, image_yx, prompt, cache_key=None):
        self._record("predict", image_yx, prompt, cache_key)
        with self._lock:
            self._n_predict += 1
            first = self._n_predict == 1
        self.predict_started.set()
        if first and self.block_first is not None:
            self.block_first.wait(20.0)
        if self.error is not None:
            raise self.error
        mask = self._mask(np.asarray(image_yx).shape, prompt, getattr(cache_key, "z", None))
        logits = np.full((LOWRES, LOWRES), float(mask.mean()), np.float32)
        return SlicePrediction(mask_yx=mask, logits_lowres=logits, score=0.9)

    # -- helpers for tests
    @property
    def prompts(self) -> list[SlicePrompt]:
        return [c.prompt for c in self.calls if c.method == "predict"]

    @property
    def predict_calls(self) -> list[Call]:
        return [c for c in self.calls if c.method == "predict"]

    def _record(self, method, image_yx, prompt, cache_key):
        image = np.asarray(image_yx)
        if not self.keep_prompts:
            prompt = None
        if prompt is not None and prompt.prev_logits_lowres is not None:
            # the shape only: a flood of prompts must not keep every previous logit map
            # (256 x 256 float32 each); a NaN stand-in, so no test reads values from it
            logits = np.asarray(prompt.prev_logits_lowres)
            stand_in = np.broadcast_to(np.array(np.nan, logits.dtype), logits.shape)
            prompt = replace(prompt, prev_logits_lowres=stand_in)
        call = Call(
            method,
            image.shape,
            (float(image.min()), float(image.max())),
            prompt,
            cache_key,
            threading.current_thread().name,
        )
        with self._lock:
            self.calls.append(call)

    def _mask(self, hw, prompt, z):
        h, w = hw
        box = prompt.box_yxyx
        in_box = np.zeros(hw, bool)
        if box is not None:
            y0, x0, y1, x1 = np.round(box).astype(int)
            in_box[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
        positive = prompt.points_yx[prompt.point_labels == 1]
        if self.truth_zyx is not None and z is not None:
            truth = np.asarray(self.truth_zyx[z])
            if len(positive):
                y, x = np.round(positive[0]).astype(int)
                organ = truth[y, x]
            else:
                values = truth[in_box]
                values = values[values > 0]
                organ = np.bincount(values).argmax() if values.size else 0
            if organ == 0:
                return np.zeros(hw, bool)
            mask = truth == organ
            return mask & in_box if box is not None else mask
        if box is not None:
            return in_box
        yy, xx = np.mgrid[:h, :w]
        mask = np.zeros(hw, bool)
        for y, x in positive:
            mask |= (yy - y) ** 2 + (xx - x) ** 2 <= 9
        return mask
