"""Inference backends for the image encoder: torch (reference) and OpenVINO (fast on a CPU).

The public entry point is :func:`make_image_encoder`::

    from napari_medsam.model.backends import make_image_encoder
    encode = make_image_encoder(engine_or_model, backend="auto", precision="auto")
    embeddings = encode(images_bchw)      # (B, 3, S, S) float32 -> (B, C, h, w) float32

Why OpenVINO: on the 2-core AVX512-BF16 CPU we develop on, the LiteMedSAM encoder
takes ~1.1 s per slice in torch fp32, ~0.72 s in ONNX Runtime fp32 (no bf16 on
CPU), ~0.56 s in OpenVINO fp32 and ~0.3 s in OpenVINO bf16, with the same masks
(``benchmarks/encoder_runtimes.py`` measures it). OpenVINO is also the one
runtime here that converts a torch module directly (no ONNX step, no extra
package) and runs on x86 and ARM CPUs of Linux, Windows and macOS.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from napari_medsam.model.backends.select import (
    BACKENDS,
    PRECISIONS,
    BackendError,
    openvino_available,
    resolve_backend,
    resolve_precision,
)
from napari_medsam.model.backends.torch_encoder import TorchEncoder

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendError",
    "TorchEncoder",
    "make_image_encoder",
    "make_encoder_backend",
    "openvino_available",
    "resolve_backend",
    "resolve_precision",
]

logger = logging.getLogger(__name__)


def _parts(model_or_engine) -> tuple[nn.Module, torch.device, int]:
    """(image encoder, device, input side) of an engine, a SAM-like model or an encoder."""
    obj = model_or_engine
    model = getattr(obj, "model", None)
    device = getattr(obj, "device", None)
    if isinstance(model, nn.Module) and hasattr(model, "image_encoder"):  # an engine
        return model.image_encoder, torch.device(device), int(obj.image_size)
    if not isinstance(obj, nn.Module):
        raise TypeError(f"expected an engine, a SAM-like model or an encoder, got {type(obj)}")
    encoder = obj.image_encoder if hasattr(obj, "image_encoder") else obj
    side = getattr(encoder, "img_size", None)
    if side is None:
        raise TypeError("cannot tell the input size of this encoder (no img_size attribute)")
    first = next(encoder.parameters(), None)
    return encoder, first.device if first is not None else torch.device("cpu"), int(side)


def make_encoder_backend(
    encoder: nn.Module,
    device: torch.device | str,
    image_size: int,
    backend: str | None = "auto",
    precision: str | None = "auto",
    background: bool = False,
    threads: int | None = None,
):
    """The backend object for an encoder: :class:`TorchEncoder` or ``OpenVINOEncoder``.

    Used by the engines (``background=True``: conversion does not block the first
    request; torch answers meanwhile). See :func:`make_image_encoder`.
    """
    name = resolve_backend(backend, device)
    if name == "torch":
        return TorchEncoder(encoder, device)
    from napari_medsam.model.backends.openvino_encoder import OpenVINOEncoder

    return OpenVINOEncoder(
        encoder,
        image_size,
        precision=resolve_precision(precision),
        threads=threads,
        background=background,
    )


class _ArrayEncoder:
    """Wraps a backend: numpy in -> numpy out, torch in -> torch out."""

    def __init__(self, backend) -> None:
        self.backend_impl = backend
        self.backend = backend.backend
        self.precision = backend.precision

    def __call__(self, images, click_maps=None, depth: int = 1):
        as_numpy = isinstance(images, np.ndarray)
        x = torch.as_tensor(np.asarray(images, np.float32)) if as_numpy else images.float()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, S, S) images, got shape {tuple(x.shape)}")
        maps = None if click_maps is None else torch.as_tensor(np.asarray(click_maps, np.float32))
        out = self.backend_impl(x, maps, depth)
        return out.float().cpu().numpy() if as_numpy else out

    def describe(self) -> str:
        return self.backend_impl.describe()


def make_image_encoder(
    model_or_engine, backend: str = "auto", precision: str = "auto", threads: int | None = None
):
    """A callable that embeds preprocessed slices with the chosen backend.

    Parameters
    ----------
    model_or_engine : SamEngine, MedSAEngine, nn.Module
        An engine (its model and device are used), a SAM-like model (with
        ``image_encoder``) or an image encoder. Weights must be loaded first: what
        is converted is the encoder as it is now.
    backend : str
        ``auto`` (OpenVINO on a CPU when installed, else torch), ``torch`` or ``openvino``.
    precision : str
        ``auto`` (bf16 where the CPU has it), ``bf16`` or ``fp32`` (force fp32).
        The torch backend is always fp32.
    threads : int, optional
        CPU threads for OpenVINO (default: ``torch.get_num_threads()``).

    Returns
    -------
    callable
        ``encode(images, click_maps=None, depth=1)``: images (B, 3, S, S) float32,
        the model input of :func:`napari_medsam.model.preprocess.preprocess_slices`
        (numpy or torch); returns (B, C, h, w) float32 embeddings of the same kind
        (torch on the CPU for OpenVINO). ``click_maps`` (B, 3, S, S) and ``depth``
        are for Med-SA models. Attributes ``backend`` and ``precision`` say what runs.
        Conversion (first use on this machine: tens of seconds) happens in this
        call; later processes load the converted model from the user cache.

    Raises
    ------
    BackendError
        Unknown names, or ``openvino`` requested where it cannot run.
    """
    encoder, device, side = _parts(model_or_engine)
    impl = make_encoder_backend(encoder, device, side, backend, precision, False, threads)
    prepare = getattr(impl, "prepare", None)
    if prepare is not None:
        prepare()
    return _ArrayEncoder(impl)
