"""A checkpoint's sanity pass before it is used: finite weights, and finite logits.

NaN or infinite weights do not fail at load time: the model then paints nothing
(or everything) and reports an IoU of nan. :func:`check_finite_weights` refuses
such a file when it is read, and :func:`check_engine_forward` runs one tiny
prediction after an engine is built and refuses it unless the logits and the
predicted IoU are finite. Both raise :class:`CheckpointError` with the reason;
a caller that already has an engine keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from napari_medsam.model.errors import CheckpointError
from napari_medsam.types import SlicePrompt

_SHOWN = 3


def _tensors(obj: Any, prefix: str = ""):
    """``(name, tensor)`` of every tensor in nested mappings (a Med-SA file nests two)."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))


def check_finite_weights(state: Mapping[str, Any], source: str) -> None:
    """Refuse weights holding NaN or infinity.

    Parameters
    ----------
    state : mapping
        A state dict (or a Med-SA payload holding state dicts).
    source : str
        The file's name, for the message.

    Raises
    ------
    CheckpointError
        Naming the first tensors with non-finite values and how many values.
    """
    bad = []
    for name, tensor in _tensors(state):
        if tensor.is_floating_point() or tensor.is_complex():
            n = int((~torch.isfinite(tensor)).sum())
            if n:
                bad.append(f"{name} ({n} of {tensor.numel()})")
    if bad:
        more = f" and {len(bad) - _SHOWN} more tensors" if len(bad) > _SHOWN else ""
        raise CheckpointError(
            f"{source}: the weights hold NaN or infinite values in {', '.join(bad[:_SHOWN])}"
            f"{more}; the file is corrupt or the training diverged, refusing to use it"
        )


def check_engine_forward(engine, source: str) -> None:
    """Run one prediction on a tiny synthetic slice; refuse the engine if it is not finite.

    Parameters
    ----------
    engine : Engine
        A freshly built engine (its embedding cache is not touched: no cache key).
    source : str
        The checkpoint's name, for the message.

    Raises
    ------
    CheckpointError
        The forward pass failed, or gave non-finite logits or a non-finite score.
    """
    yy, xx = np.mgrid[:64, :64]
    image_yx = (((yy - 30) ** 2 + (xx - 34) ** 2) < 15**2).astype(np.float32) * 0.8 + 0.1
    prompt = SlicePrompt(
        points_yx=np.array([[30.0, 34.0]], np.float32),
        point_labels=np.array([1], np.int64),
        box_yxyx=np.array([14.0, 18.0, 46.0, 50.0], np.float32),
    )
    try:
        pred = engine.predict(image_yx, prompt, cache_key=None)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable model
        raise CheckpointError(
            f"{source}: the model fails on a test slice ({type(exc).__name__}: {exc})"
        ) from None
    logits = np.asarray(pred.logits_lowres)
    if not np.isfinite(logits).all() or not np.isfinite(pred.score):
        raise CheckpointError(
            f"{source}: the model gives non-finite results on a test slice "
            f"({int((~np.isfinite(logits)).sum())} non-finite logits, IoU {pred.score}); "
            "refusing to use it"
        )
