"""npe2 reader: scans (NIfTI, NRRD, MetaImage, DICOM series) as napari image or labels layers.

Imports neither napari nor Qt: it returns plain layer-data tuples. A label map gets
the names and colours of the sidecar beside it (``<stem>.labels.json``, an ITK-SNAP
``<stem>.label.txt`` or a 3D Slicer ``<stem>.ctbl``), as the writer left them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_medsam.io.nifti import NiftiVolume
from napari_medsam.io.orientation import AXIS_LABELS_ZYX
from napari_medsam.io.volumes import is_scan_path, load_volume, volume_stem
from napari_medsam.prompts.intensity import auto_window

__all__ = [
    "looks_like_labels",
    "napari_get_reader",
    "neighbour_agreement",
    "read_nifti_layers",
    "read_scan_layers",
    "volume_to_layer_data",
]

logger = logging.getLogger(__name__)

LayerData = tuple[np.ndarray, dict[str, Any], str]

# Name words that mark a label map: "example_seg", "lung1_label", "aal", "label_vert".
# Whole words only (separated by _ . - digits or the ends): "brain_masked" is an image.
_LABEL_NAME = re.compile(
    r"(?<![a-z])(seg|segmentation|label|labels|labelmap|mask|aal|atlas|parc|aseg|aparc)(?![a-z])",
    re.IGNORECASE,
)
# Without a name hint, an integer volume with at most this many distinct values is labels.
_MAX_FEW_LABELS = 16
_MAX_HINTED_LABELS = 65536
_MAX_UNHINTED_LABELS = 1024
# More labels than that need piecewise-constant content: the share of neighbouring voxel
# pairs (along x, not both 0) with equal values. Measured on ../shared/data (86 files):
# label maps 0.78-0.97 beyond 16 values (0.47-0.95 for binary ones), images 0.005-0.51.
_MIN_AGREEMENT_HINTED = 0.6
_MIN_AGREEMENT_UNHINTED = 0.8
_AGREEMENT_MAX_VOXELS = 16_000_000  # larger volumes: every n-th slice


def _distinct_nonnegative(data: np.ndarray, limit: int) -> int | None:
    """Number of distinct values of a non-negative integer array (None if above limit)."""
    hi = int(data.max())
    if hi >= 2**20:
        return None
    counts = np.bincount(data.reshape(-1).astype(np.int64, copy=False), minlength=1)
    n = int(np.count_nonzero(counts))
    return n if n <= limit else None


def neighbour_agreement(data: np.ndarray) -> float:
    """Share of x-neighbour voxel pairs, not both 0, that hold the same value.

    Near 1 for a label map (piecewise constant), low for an image (noise, gradients).
    """
    data = np.asarray(data)
    if data.ndim >= 3 and data.size > _AGREEMENT_MAX_VOXELS:
        data = data[:: int(np.ceil(data.size / _AGREEMENT_MAX_VOXELS))]
    a, b = data[..., 1:], data[..., :-1]
    foreground = (a != 0) | (b != 0)
    n = int(np.count_nonzero(foreground))
    return 1.0 if n == 0 else float(np.count_nonzero((a == b) & foreground) / n)


def looks_like_labels(data: np.ndarray, name: str) -> bool:
    """Whether a volume is a label map rather than an image.

    Integer dtype and non-negative values are required. At most 16 distinct values
    (binary masks, small label maps) are labels. More values are labels only when the
    content is piecewise constant (:func:`neighbour_agreement` >= 0.6 with a name
    hint such as ``seg``, ``label``, ``aal``, ``atlas``; >= 0.8 and at most 1024 values
    without one). So a skull-stripped ``t1_masked`` or an ``atlas_t1`` template, whose
    voxels vary smoothly, opens as an image.
    """
    if data.dtype.kind not in "iu" or data.size == 0 or int(data.min()) < 0:
        return False
    hinted = _LABEL_NAME.search(name) is not None
    limit = _MAX_HINTED_LABELS if hinted else _MAX_UNHINTED_LABELS
    n = _distinct_nonnegative(data, limit)
    if n is None:
        return False
    if n <= _MAX_FEW_LABELS:
        return True
    needed = _MIN_AGREEMENT_HINTED if hinted else _MIN_AGREEMENT_UNHINTED
    return neighbour_agreement(data) >= needed


def _sidecar_registry(path: Path | None):
    """The label registry beside ``path`` (JSON, ITK-SNAP or Slicer), or None."""
    if path is None:
        return None
    from napari_medsam.session.labels import LabelRegistry

    try:
        return LabelRegistry.load_sidecar(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("%s: label sidecar not used (%s)", path.name, exc)
        return None


def _labels_kwargs(volume: NiftiVolume, kwargs: dict[str, Any]) -> None:
    """Names and colours from the sidecar: ``colormap``, ``features`` and the registry."""
    registry = _sidecar_registry(volume.path)
    if registry is None or not len(registry):
        return
    from napari_medsam.session.labels import LAYER_METADATA_KEY

    kwargs["metadata"][LAYER_METADATA_KEY] = registry.to_dict()
    colors: dict[Any, tuple[float, ...]] = {None: (0.7, 0.7, 0.7, 1.0), 0: (0.0, 0.0, 0.0, 0.0)}
    for info in registry:
        colors[info.id] = (*(c / 255.0 for c in info.color), 1.0 if info.visible else 0.0)
    kwargs["colormap"] = colors
    ids = [0, *registry.ids()]
    # napari shows a label's features in the status bar under the cursor
    kwargs["features"] = {"index": ids, "name": ["background", *(registry.name(i) for i in ids[1:])]}
    logger.info("%s: %d label names and colours from the sidecar", volume.path, len(registry))


def volume_to_layer_data(volume: NiftiVolume) -> LayerData:
    """One napari layer-data tuple for a loaded volume (image or labels).

    Both kinds get ``scale = spacing_zyx_mm`` and the source grid in ``metadata``.
    Images get a gray colormap and contrast limits from :func:`auto_window`; labels
    get their sidecar's names and colours when one sits beside the file.
    """
    name = volume_stem(volume.path) if volume.path is not None else volume.name
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(volume.spacing_zyx_mm),
        "metadata": volume.layer_metadata(),
        "axis_labels": AXIS_LABELS_ZYX,
    }
    if looks_like_labels(volume.data_zyx, name):
        _labels_kwargs(volume, kwargs)
        return (volume.data_zyx, kwargs, "labels")
    window = auto_window(volume.data_zyx)
    kwargs["metadata"]["window_kind"] = window.kind
    kwargs["colormap"] = "gray"
    kwargs["contrast_limits"] = window.contrast_limits
    return (volume.data_zyx, kwargs, "image")


def read_scan_layers(path: str | os.PathLike | list[str | os.PathLike]) -> list[LayerData]:
    """Read one or more scans (files or DICOM folders) into napari layer-data tuples.

    Raises
    ------
    NiftiError
        For a missing, corrupt or unsupported input (napari shows it as a notification).
    """
    paths = path if isinstance(path, list | tuple) else [path]
    return [volume_to_layer_data(load_volume(Path(p))) for p in paths]


#: The former name (NIfTI was the only format).
read_nifti_layers = read_scan_layers


def napari_get_reader(path: Any) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: a reader for NIfTI, NRRD, MetaImage paths and DICOM folders.

    Never raises; accepts a str/Path or a non-empty list of them (all scans).
    """
    try:
        paths = list(path) if isinstance(path, list | tuple) else [path]
        if paths and all(is_scan_path(p) for p in paths):
            return read_scan_layers
    except Exception:  # a reader hook must never raise on odd input
        logger.debug("napari_get_reader: rejected %r", path, exc_info=True)
    return None
