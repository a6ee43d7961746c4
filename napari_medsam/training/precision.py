"""Training precision: bf16 autocast on CUDA, and on a bf16 CPU for decoder-only steps.

``benchmarks/train_precision.py`` measures the step time and the loss curves of
both precisions on the phantom.
"""

from __future__ import annotations

import contextlib

import torch

from napari_medsam.training.config import FinetuneConfig


def autocast_for(device: torch.device, cpu_bf16: bool = False):
    """bf16 autocast on CUDA; on the CPU only when ``cpu_bf16``; else a null context."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and cpu_bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_bf16_steps(config: FinetuneConfig, device: torch.device) -> bool:
    """Whether training steps run under bf16 autocast on the CPU.

    Decoder-only training (``parts="decoder"``) on a CPU with native bf16, unless
    ``config.precision`` is ``"fp32"``.
    """
    from napari_medsam.model.backends.select import resolve_precision

    return (
        device.type == "cpu"
        and config.parts == "decoder"
        and resolve_precision(config.precision) == "bf16"
    )
