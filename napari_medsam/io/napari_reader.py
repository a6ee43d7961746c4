"""npe2 reader: NIfTI files as napari image or labels layers.

Imports neither napari nor Qt: it returns plain layer-data tuples.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_medsam.io.nifti import NiftiVolume, is_nifti_path, load_nifti
from napari_medsam.io.orientation import AXIS_LABELS_ZYX
from napari_medsam.prompts.intensity import auto_window

__all__ = ["looks_like_labels", "napari_get_reader", "read_nifti_layers", "volume_to_layer_data"]

logger = logging.getLogger(__name__)

LayerData = tuple[np.ndarray, dict[str, Any], str]

# Name parts that mark a label map (word-ish match: "seg", "example_seg", "aal", "mask").
_LABEL_NAME = re.compile(r"(seg|label|mask|aal|atlas|parc)", re.IGNORECASE)
# Without a name hint, an integer volume with at most this many distinct values is labels.
_MAX_UNHINTED_LABELS = 16
_MAX_HINTED_LABELS = 65536


def _distinct_nonnegative(data: np.ndarray, limit: int) -> int | None:
    """Number of distinct values of a non-negative integer array (None if above limit)."""
    hi = int(data.max())
    if hi >= 2**20:
        return None
    counts = np.bincount(data.reshape(-1).astype(np.int64, copy=False), minlength=1)
    n = int(np.count_nonzero(counts))
    return n if n <= limit else None


def looks_like_labels(data: np.ndarray, name: str) -> bool:
    """Whether a volume is a label map rather than an image.

    Integer dtype and non-negative values are required. With a name hint (seg, label,
    mask, aal, atlas, parc) up to 65536 distinct values count as labels; without
    one, at most 16 (binary masks, small label maps); 8-bit images have more.
    """
    if data.dtype.kind not in "iu" or data.size == 0 or int(data.min()) < 0:
        return False
    hinted = _LABEL_NAME.search(name) is not None
    limit = _MAX_HINTED_LABELS if hinted else _MAX_UNHINTED_LABELS
    return _distinct_nonnegative(data, limit) is not None


def volume_to_layer_data(volume: NiftiVolume) -> LayerData:
    """One napari layer-data tuple for a loaded volume (image or labels).

    Both kinds get ``scale = spacing_zyx_mm`` and the source grid in ``metadata``.
    Images get a gray colormap and contrast limits from :func:`auto_window`.
    """
    name = volume.name
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(volume.spacing_zyx_mm),
        "metadata": volume.layer_metadata(),
        "axis_labels": AXIS_LABELS_ZYX,
    }
    if looks_like_labels(volume.data_zyx, name):
        return (volume.data_zyx, kwargs, "labels")
    window = auto_window(volume.data_zyx)
    kwargs["metadata"]["window_kind"] = window.kind
    kwargs["colormap"] = "gray"
    kwargs["contrast_limits"] = window.contrast_limits
    return (volume.data_zyx, kwargs, "image")


def read_nifti_layers(path: str | os.PathLike | list[str | os.PathLike]) -> list[LayerData]:
    """Read one or more NIfTI files into napari layer-data tuples.

    Raises
    ------
    NiftiError
        For a missing, corrupt or unsupported file (napari shows it as a notification).
    """
    paths = path if isinstance(path, list | tuple) else [path]
    return [volume_to_layer_data(load_nifti(Path(p))) for p in paths]


def napari_get_reader(path: Any) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: a reader for ``.nii``/``.nii.gz`` paths, else None.

    Never raises; accepts a str/Path or a non-empty list of them (all NIfTI).
    """
    try:
        paths = list(path) if isinstance(path, list | tuple) else [path]
        if paths and all(is_nifti_path(p) for p in paths):
            return read_nifti_layers
    except Exception:  # a reader hook must never raise on odd input
        logger.debug("napari_get_reader: rejected %r", path, exc_info=True)
    return None
