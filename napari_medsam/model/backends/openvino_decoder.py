"""A SAM-style mask decoder on OpenVINO (CPU), fp32: the click decoder's hot path.

What is converted is the mask decoder alone, with every output: (image embedding,
dense positional encoding, sparse prompt tokens, dense prompt embedding) ->
(all 4 low-res logit maps, their 4 IoUs). The number of sparse tokens is dynamic
(one per click, plus a box's two corners), the batch is one prompt. The prompt
encoder and the click-map stem stay in torch: they are small.

Measured (the shipped click decoder, 2 threads, quiet machine, 20 runs): OpenVINO
f32 52.2 ms a click, torch eager fp32 71.4 ms (1.37x), torch bf16 autocast 62.9 ms;
max |logit difference| to torch fp32 1e-5. OpenVINO bf16 was 1.5x faster than its
f32 (``benchmarks/decoder_openvino.py``, shared machine) but its masks drift (Dice
of ``logits > 0`` to f32 on the phantom, 1-50 clicks: mean 0.995, worst 0.982),
so the decoder is always fp32.

As for the encoder, the module is converted with its weights loaded and in eval
mode, and stored in the model cache
(:mod:`napari_medsam.model.backends.model_cache`), keyed by the weights' hash,
the runtime version and the precision. With ``background=True`` the conversion
runs on a thread and torch answers until it is ready. Any prompt the converted
model does not take (a batch of several, no sparse token at all) runs on torch.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from napari_medsam.model.backends.model_cache import cached_entry, entry_key, weights_digest
from napari_medsam.model.backends.openvino_encoder import _CONVERSIONS, one_conversion_at_a_time

logger = logging.getLogger(__name__)

XML = "decoder.xml"
PRECISION = "fp32"


class AllOutputs(nn.Module):
    """A mask decoder returning all of its outputs, single mask first (what is converted).

    ``forward(image_embeddings, image_pe, sparse, dense)`` -> ((B, 4, H, W) logits,
    (B, 4) IoU), for SAM's ``MaskDecoder`` (``predict_masks``) and the Med-SA one
    (``multimask_output=None``).
    """

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, image_embeddings, image_pe, sparse, dense):
        if hasattr(self.decoder, "predict_masks"):
            return self.decoder.predict_masks(image_embeddings, image_pe, sparse, dense)
        return self.decoder(image_embeddings, image_pe, sparse, dense, None)


def select_outputs(masks: Tensor, iou: Tensor, multimask_output: bool | None):
    """The decoder's own selection from all 4 outputs: None all, True the 3, False the 1st."""
    if multimask_output is None:
        return masks, iou
    sel = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, sel], iou[:, sel]


class OpenVINODecoder:
    """A mask decoder callable on OpenVINO f32, called as the torch module is.

    Parameters
    ----------
    decoder : nn.Module
        The mask decoder, on the CPU, weights loaded. Its weights at this call
        are what is converted: later changes are not seen.
    embedding_chw : tuple of int
        (C, h, w) of the image embedding (and of the dense inputs).
    threads : int, optional
        CPU threads per inference (default: ``torch.get_num_threads()``).
    background : bool
        Convert on a background thread and answer with torch until it is ready.
    cache_dir : Path, optional
        Model cache root (default: the user cache dir).
    """

    backend = "openvino"
    precision = PRECISION

    def __init__(
        self,
        decoder: nn.Module,
        embedding_chw: tuple[int, int, int],
        threads: int | None = None,
        background: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        import openvino as ov

        self._ov = ov
        self.decoder = decoder
        self.embedding_chw = tuple(int(v) for v in embedding_chw)
        self.threads = int(threads or torch.get_num_threads())
        self.background = background
        self.cache_dir = cache_dir
        self.timings: dict[str, float] = {}
        self._lock = threading.Lock()
        self._request = None
        self._failed = False
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- conversion
    def _key_parts(self) -> dict:
        return {
            "runtime": "openvino",
            "runtime_version": self._ov.get_version(),
            "torch": torch.__version__,
            "precision": PRECISION,
            "weights": weights_digest(self.decoder),
            "part": "mask_decoder",
            "decoder": type(self.decoder).__name__,
            "embedding_chw": self.embedding_chw,
        }

    def _example(self) -> tuple[Tensor, ...]:
        c, h, w = self.embedding_chw
        gen = torch.Generator().manual_seed(0)
        dense = [torch.randn((1, c, h, w), generator=gen) for _ in range(3)]
        sparse = torch.randn((1, 3, c), generator=gen)
        return dense[0], dense[1], sparse, dense[2]

    @one_conversion_at_a_time
    def _convert_into(self, folder: Path) -> None:
        t0 = time.perf_counter()
        c, h, w = self.embedding_chw
        grid = self._ov.PartialShape([1, c, h, w])
        modes = [m.training for m in self.decoder.modules()]
        self.decoder.eval()
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                model = self._ov.convert_model(
                    AllOutputs(self.decoder),
                    example_input=self._example(),
                    input=[grid, grid, self._ov.PartialShape([1, -1, c]), grid],
                )
        finally:
            for m, mode in zip(self.decoder.modules(), modes, strict=True):
                m.training = mode
        self._ov.save_model(model, str(folder / XML), compress_to_fp16=False)
        self.timings["convert_s"] = time.perf_counter() - t0
        logger.info("converted the mask decoder to OpenVINO in %.1f s", self.timings["convert_s"])

    def _build(self) -> None:
        try:
            parts = self._key_parts()
            folder = cached_entry(entry_key(parts), self._convert_into, info=parts,
                                  root=self.cache_dir)  # fmt: skip
            t0 = time.perf_counter()
            core = self._ov.Core()
            compiled = core.compile_model(core.read_model(str(folder / XML)), "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            })  # fmt: skip
            request = compiled.create_infer_request()
            self.timings["compile_s"] = time.perf_counter() - t0
        except Exception as err:  # noqa: BLE001 - any conversion failure: torch answers
            logger.warning("napari-medsam: OpenVINO could not convert the mask decoder (%s); "
                           "using torch for it", err)  # fmt: skip
            with self._lock:
                self._failed = True
            return
        with self._lock:
            self._request = request

    def prepare(self, wait: bool = True) -> bool:
        """Convert (or load from the cache) and compile; True when OpenVINO answers now.

        With ``wait=False`` the first call starts the conversion on a background
        thread and returns False.
        """
        with self._lock:
            if self._request is not None or self._failed:
                return self._request is not None
            thread = self._thread
            if thread is None:
                thread = threading.Thread(target=self._build, daemon=True,
                                          name="medsam-ov-decoder")  # fmt: skip
                self._thread = thread
                _CONVERSIONS.add(thread)
                thread.start()
        if wait:
            thread.join()
        with self._lock:
            return self._request is not None

    def ready(self) -> bool:
        """True when OpenVINO answers now."""
        with self._lock:
            return self._request is not None

    # ------------------------------------------------------------------ inference
    def __call__(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool | None,
    ) -> tuple[Tensor, Tensor]:
        """As the mask decoder's forward: (1, C, h, w) embedding and PE, (1, N, C) tokens,
        (1, C, h, w) dense prompt -> (1, M, 4h, 4w) logits and (1, M) IoU, M = 1, 3 or 4."""
        inputs = (image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings)
        fits = (
            sparse_prompt_embeddings.shape[0] == 1
            and sparse_prompt_embeddings.shape[1] > 0  # no token: Med-SA's zero-prompt branch
            and all(tuple(t.shape[1:]) == self.embedding_chw for t in inputs if t.ndim == 4)
            and image_embeddings.shape[0] == dense_prompt_embeddings.shape[0] == 1
        )
        if not fits or not self.prepare(wait=not self.background):
            with torch.inference_mode():
                return self.decoder(*inputs, multimask_output)
        arrays = [np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy()) for t in inputs]
        with self._lock:
            self._request.infer(arrays, share_inputs=True)  # no copy: arrays live meanwhile
            masks = np.array(self._request.get_output_tensor(0).data, copy=True)
            iou = np.array(self._request.get_output_tensor(1).data, copy=True)
        return select_outputs(torch.from_numpy(masks), torch.from_numpy(iou), multimask_output)

    def describe(self) -> str:
        return f"OpenVINO {self._ov.get_version().split('-')[0]} fp32 on CPU"


def make_decoder_backend(
    decoder: nn.Module,
    device,
    embedding_chw: tuple[int, int, int],
    backend: str | None = "auto",
    background: bool = False,
    threads: int | None = None,
):
    """The mask decoder itself (torch) or an :class:`OpenVINODecoder` around it.

    ``backend`` as for the image encoder (:func:`resolve_backend`); the decoder is
    fp32 on either backend.
    """
    from napari_medsam.model.backends.select import resolve_backend

    if resolve_backend(backend, device) == "torch":
        return decoder
    return OpenVINODecoder(decoder, embedding_chw, threads=threads, background=background)
