"""npe2 writer: a napari labels layer saved on its source image's grid (NIfTI, NRRD, MetaImage).

When the layer's metadata holds the widget's label registry (key
:data:`~napari_medsam.session.labels.LAYER_METADATA_KEY`), the label-name sidecars
(JSON, ITK-SNAP, 3D Slicer) are written next to the NIfTI too, so napari's own
*File > Save* keeps the names. Imports neither napari nor Qt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_medsam.io.atomic import same_file
from napari_medsam.io.nifti import NiftiError, metadata_for_display_grid
from napari_medsam.io.volumes import save_labels
from napari_medsam.session.labels import LAYER_METADATA_KEY, LabelRegistry

__all__ = ["write_labels"]

logger = logging.getLogger(__name__)

_GRID_KEYS = ("affine_ras", "ornt", "file_shape")


def _as_array(data: Any) -> np.ndarray:
    # Multiscale labels arrive as a list of levels; level 0 is full resolution.
    if isinstance(data, list | tuple):
        if not data:
            raise NiftiError("labels layer has no data")
        data = data[0]
    return np.asarray(data)


def write_labels(path: str, data: Any, meta: Mapping[str, Any]) -> list[str]:
    """npe2 single-layer writer for labels.

    Parameters
    ----------
    path : str
        Output ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha`` or ``.mhd`` (see
        :func:`napari_medsam.io.volumes.save_labels`).
    data : (Z, Y, X) integer array
        The labels layer's data, display orientation.
    meta : mapping
        The layer's attributes. ``meta["metadata"]`` should hold the source grid (as set
        by the reader, sample data, or a labels layer made from such an image). Without
        it, the file gets a diagonal affine from ``meta["scale"]`` (z, y, x in mm), laid
        out so that it reopens aligned with the display, and a warning is logged. With
        a label registry under ``LAYER_METADATA_KEY``, its sidecars are written too (ids
        in the volume it lacks get TotalSegmentator names); an unreadable registry is
        logged and skipped, the NIfTI stays written.

    Returns
    -------
    list of str
        ``[path]`` (the NIfTI; the sidecars sit next to it).
    """
    labels_zyx = _as_array(data)
    if labels_zyx.ndim != 3:
        raise NiftiError(f"only 3D labels can be saved, got shape {labels_zyx.shape}")
    layer_meta = meta.get("metadata") or {}
    if all(k in layer_meta for k in _GRID_KEYS):
        grid = layer_meta
    else:
        scale = meta.get("scale")
        spacing = tuple(float(s) for s in scale) if scale is not None else (1.0, 1.0, 1.0)
        if len(spacing) != 3:
            raise NiftiError(f"labels layer scale {spacing} is not 3D")
        logger.warning(
            "labels layer %r has no source image grid in its metadata; writing %s with a "
            "diagonal affine from its scale %s mm",
            meta.get("name", "?"),
            path,
            spacing,
        )
        grid = metadata_for_display_grid(labels_zyx.shape, spacing)
    source = layer_meta.get("source_path")
    if source and same_file(path, source):  # never write labels over the scan they belong to
        raise NiftiError(f"{Path(path).name} is the scan these labels belong to; refusing to "
                         "overwrite it: choose another file name")  # fmt: skip
    written = save_labels(labels_zyx, path, grid)
    record = layer_meta.get(LAYER_METADATA_KEY)
    if record is not None:
        _write_sidecars(record, labels_zyx, written, meta.get("name", "?"))
    return [str(written)]


def _write_sidecars(record: Any, labels_zyx: np.ndarray, nifti_path, name: str) -> None:
    try:
        registry = LabelRegistry.from_dict(record)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        logger.warning(
            "labels layer %r: metadata[%r] is not a label registry (%s); %s was saved "
            "without label names",
            name,
            LAYER_METADATA_KEY,
            exc,
            nifti_path,
        )
        return
    registry.sync_with(labels_zyx)
    registry.save_sidecars(nifti_path)
