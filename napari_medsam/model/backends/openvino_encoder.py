"""The image encoder on OpenVINO (CPU), bf16 where the CPU has it.

The encoder is traced with its weights loaded and in eval mode (TinyViT caches
its attention biases in ``eval()``; a model converted before its weights were
loaded gives wrong embeddings), converted to OpenVINO's IR, stored in the model
cache (:mod:`napari_medsam.model.backends.model_cache`) and compiled for the CPU.

One compiled model exists per *signature*: the slices per request (1, or the
slab depth D of an SD-Trans Med-SA model) and whether click maps are an input (a
Med-SA model with a trained click embedding). TinyViT's code fixes the batch
size when traced, so a request of N slices runs N / D inferences of the static
model. A signature is converted on first use; with ``background=True`` the
conversion runs on a thread while torch answers, so nothing waits for it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from napari_medsam.model.backends.model_cache import cached_entry, entry_key, weights_digest
from napari_medsam.model.backends.torch_encoder import (
    TorchEncoder,
    is_medsa_encoder,
    run_torch_encoder,
)

logger = logging.getLogger(__name__)

# Conversions still running when the interpreter exits would be killed inside native
# code (the process aborts, exit code 134): a short CLI run waits for them instead.
_CONVERSIONS: set[threading.Thread] = set()


@atexit.register
def _finish_conversions() -> None:
    for thread in list(_CONVERSIONS):
        thread.join()


# torch.jit tracing keeps global state: two conversions at once (the encoder's and the
# click decoder's, each on its background thread) corrupt each other's trace, and one of
# them then silently falls back to torch
_CONVERT_LOCK = threading.Lock()


def one_conversion_at_a_time(convert):
    """Decorate a ``_convert_into`` method so conversions never run concurrently."""

    @functools.wraps(convert)
    def serialized(*args, **kwargs):
        with _CONVERT_LOCK:
            return convert(*args, **kwargs)

    return serialized

XML = "encoder.xml"


class Signature(NamedTuple):
    """What one compiled model takes: ``slices`` per request, slab ``depth``, click ``maps``."""

    slices: int
    depth: int
    maps: bool


class _Traced(nn.Module):
    """images (+ click maps) -> embeddings, with the slab depth fixed (what is traced)."""

    def __init__(self, encoder: nn.Module, signature: Signature) -> None:
        super().__init__()
        self.encoder = encoder
        self.signature = signature

    def forward(self, images: torch.Tensor, click_maps: torch.Tensor | None = None):
        if not is_medsa_encoder(self.encoder):
            return self.encoder(images)
        return self.encoder(images, click_maps, self.signature.depth)


def _set_eval(module: nn.Module) -> list[bool]:
    modes = [m.training for m in module.modules()]
    module.eval()  # (re)computes TinyViT's cached attention biases from the current weights
    return modes


def _restore_modes(module: nn.Module, modes: list[bool]) -> None:
    for m, mode in zip(module.modules(), modes, strict=True):
        m.training = mode


class OpenVINOEncoder:
    """Image encoder callable on OpenVINO; same call as :class:`TorchEncoder`.

    Parameters
    ----------
    encoder : nn.Module
        The model's ``image_encoder``, on the CPU, weights loaded. Its weights at
        this call are what is converted: later changes are not seen.
    image_size : int
        Side S of the square input.
    precision : str
        ``"bf16"`` or ``"fp32"`` (resolved, see :func:`resolve_precision`).
    threads : int, optional
        CPU threads per inference (default: ``torch.get_num_threads()``).
    background : bool
        Convert on a background thread and answer with torch until it is ready.
    cache_dir : Path, optional
        Model cache root (default: the user cache dir).
    """

    backend = "openvino"

    def __init__(
        self,
        encoder: nn.Module,
        image_size: int,
        precision: str = "bf16",
        threads: int | None = None,
        background: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        import openvino as ov

        self._ov = ov
        self.encoder = encoder
        self.image_size = int(image_size)
        self.precision = precision
        self.threads = int(threads or torch.get_num_threads())
        self.background = background
        self.cache_dir = cache_dir
        self.torch = TorchEncoder(encoder, "cpu")
        self._core = ov.Core()
        self._compiled: dict[Signature, object] = {}
        self._failed: set[Signature] = set()
        self._pending: dict[Signature, threading.Thread] = {}
        self._lock = threading.Lock()
        self._digest: str | None = None
        self.timings: dict[str, float] = {}
        self.medsa = is_medsa_encoder(encoder)

    # ----------------------------------------------------------------- conversion
    def _key_parts(self, signature: Signature) -> dict:
        if self._digest is None:
            self._digest = weights_digest(self.encoder)
        return {
            "runtime": "openvino",
            "runtime_version": self._ov.get_version(),
            "torch": torch.__version__,
            "precision": self.precision,
            "weights": self._digest,
            "encoder": type(self.encoder).__name__,
            "image_size": self.image_size,
            "signature": tuple(signature),
        }

    def _example(self, signature: Signature) -> tuple[torch.Tensor, ...]:
        side = self.image_size
        gen = torch.Generator().manual_seed(0)
        images = torch.rand((signature.slices, 3, side, side), generator=gen)
        if signature.maps:
            return images, (torch.rand(images.shape, generator=gen) > 0.9).float()
        return (images,)

    @one_conversion_at_a_time
    def _convert_into(self, folder: Path, signature: Signature) -> None:
        t0 = time.perf_counter()
        modes = _set_eval(self.encoder)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are static
                model = self._ov.convert_model(
                    _Traced(self.encoder, signature), example_input=self._example(signature)
                )
        finally:
            _restore_modes(self.encoder, modes)
        self._ov.save_model(model, str(folder / XML), compress_to_fp16=False)
        self.timings["convert_s"] = time.perf_counter() - t0
        logger.info("converted the image encoder to OpenVINO in %.1f s", self.timings["convert_s"])

    def _build(self, signature: Signature):
        parts = self._key_parts(signature)
        folder = cached_entry(
            entry_key(parts),
            lambda tmp: self._convert_into(tmp, signature),
            info=parts,
            root=self.cache_dir,
        )
        t0 = time.perf_counter()
        compiled = self._core.compile_model(
            self._core.read_model(str(folder / XML)),
            "CPU",
            {
                "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "LATENCY",
                "NUM_STREAMS": 1,
            },
        )
        self.timings["compile_s"] = time.perf_counter() - t0
        return compiled

    def _prepare(self, signature: Signature) -> None:
        try:
            compiled = self._build(signature)
        except Exception as err:  # noqa: BLE001 - any conversion failure: torch answers
            logger.warning(
                "napari-medsam: OpenVINO could not convert the encoder for %s (%s); "
                "using torch for it",
                signature,
                err,
            )
            with self._lock:
                self._failed.add(signature)
                self._pending.pop(signature, None)
            return
        with self._lock:
            self._compiled[signature] = compiled
            self._pending.pop(signature, None)

    def prepare(self, signature: Signature | None = None, wait: bool = True) -> bool:
        """Convert and compile one signature (default: one slice, no click maps).

        Returns True when it is ready to use (always False with ``wait=False``
        the first time: the conversion then runs on a background thread).
        """
        signature = signature or Signature(1, 1, False)
        with self._lock:
            if signature in self._compiled:
                return True
            if signature in self._failed:
                return False
            thread = self._pending.get(signature)
            if thread is None and not wait:
                thread = threading.Thread(
                    target=self._prepare, args=(signature,), daemon=True, name="medsam-ov-convert"
                )
                self._pending[signature] = thread
                _CONVERSIONS.add(thread)
                logger.info(
                    "preparing the OpenVINO image encoder for %s in the background "
                    "(a first conversion takes tens of seconds; torch answers meanwhile)",
                    signature,
                )
                thread.start()
                return False
        if not wait:
            return False
        if thread is not None:
            thread.join()
        else:
            self._prepare(signature)
        with self._lock:
            return signature in self._compiled

    def ready(self, signature: Signature | None = None) -> bool:
        """True when ``signature`` (default: one slice, no maps) runs on OpenVINO now."""
        with self._lock:
            return (signature or Signature(1, 1, False)) in self._compiled

    # ------------------------------------------------------------------ inference
    def __call__(
        self, images: torch.Tensor, click_maps: torch.Tensor | None = None, depth: int = 1
    ) -> torch.Tensor:
        """(N, 3, S, S) float32 preprocessed slices (+ (N, 3, S, S) click maps) -> (N, C, h, w).

        ``depth`` D > 1 (SD-Trans): the N slices are N / D slabs of D slices.
        """
        images = images.detach().to("cpu", torch.float32)
        maps = click_maps is not None and self.medsa and self.encoder.medsa_click_embed is not None
        if click_maps is not None and not self.medsa:
            raise ValueError("click maps need a Med-SA model")
        depth = int(depth)
        if depth != 1 and not self.medsa:
            raise ValueError("a slab depth needs a Med-SA model")
        n = images.shape[0]
        signature = Signature(depth, depth, bool(maps))
        if n % depth or not self.prepare(signature, wait=not self.background):
            return run_torch_encoder(
                self.encoder, images, click_maps.float() if maps else click_maps, depth
            )
        with self._lock:
            compiled = self._compiled[signature]
        request = compiled.create_infer_request()
        x = images.numpy()
        m = click_maps.detach().to("cpu", torch.float32).numpy() if maps else None
        outputs = []
        for start in range(0, n, depth):
            inputs = [np.ascontiguousarray(x[start : start + depth])]
            if m is not None:
                inputs.append(np.ascontiguousarray(m[start : start + depth]))
            request.infer(inputs)
            outputs.append(np.array(request.get_output_tensor(0).data, copy=True))
        return torch.from_numpy(np.concatenate(outputs) if len(outputs) > 1 else outputs[0])

    def describe(self) -> str:
        return f"OpenVINO {self._ov.get_version().split('-')[0]} {self.precision} on CPU"
