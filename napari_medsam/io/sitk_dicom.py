"""Labels written as a DICOM series: one file per slice, in a new folder.

Each slice carries Image Position / Orientation (Patient), Pixel Spacing and Slice
Thickness from the source grid, so a DICOM reader (SimpleITK/GDCM, 3D Slicer,
ITK-SNAP) rebuilds the same geometry. The series joins the source's study (its
Study Instance UID, Frame of Reference, patient) when the source was a DICOM series.
The folder appears only once every file is written (temporary folder, then rename).

The slices are stored in the direction of the slice normal (row x column). A source
grid whose third axis points the other way comes back with the k axis reversed and
the affine's third column negated: the same voxels at the same world positions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from napari_medsam.io.errors import NiftiError

__all__ = ["new_uid", "write_dicom_series"]

logger = logging.getLogger(__name__)


def new_uid() -> str:
    """A fresh DICOM UID (the ``2.25.<UUID as integer>`` form, at most 64 characters)."""
    return f"2.25.{uuid.uuid4().int}"


def _ds(value: float) -> str:
    # DICOM decimal strings hold at most 16 characters
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8g}"


def _series_tags(image, tags: Mapping[str, str]) -> dict[str, str]:
    d = image.GetDirection()
    now_date, now_time = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    return {
        "0008|0008": "DERIVED\\SECONDARY",
        "0008|0060": "OT",
        "0008|0021": now_date,
        "0008|0031": now_time,
        "0008|103e": "napari-medsam labels",
        "0010|0010": tags.get("patient_name", "anonymous"),
        "0010|0020": tags.get("patient_id", "napari-medsam"),
        "0020|000d": tags.get("study_instance_uid") or new_uid(),
        "0020|0052": tags.get("frame_of_reference_uid") or new_uid(),
        "0008|0020": tags.get("study_date", now_date),
        "0020|0010": tags.get("study_id", "1"),
        "0020|000e": new_uid(),
        "0020|0011": "9001",
        "0020|0037": "\\".join(_ds(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
        "0018|0050": _ds(image.GetSpacing()[2]),
    }


def write_dicom_series(image, folder: Path, tags: Mapping[str, str]) -> list[Path]:
    """Write a 3D integer SimpleITK image as a DICOM series into the new ``folder``.

    Parameters
    ----------
    image : SimpleITK.Image
        3D, uint8 or uint16 voxels, with the source's spacing, origin, direction.
    folder : Path
        Must not exist yet, or be an empty folder; its parent must exist.
    tags : mapping
        Study tags of the source series (keys of ``sitk_io.DICOM_KEPT_TAGS``' values).

    Returns
    -------
    list of Path
        The slice files, ``slice_0000.dcm`` ... in the final folder.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise NiftiError(
            f"{folder.name}: already exists; a DICOM series is written into a new, empty folder"
        )
    if image.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16):
        raise NiftiError(
            f"{folder.name}: label values do not fit in 16 bits; DICOM output needs ids <= 65535"
        )
    image = _normal_ordered(image)
    series = _series_tags(image, tags)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    names = []
    try:
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for k in range(image.GetDepth()):
            slice_2d = image[:, :, k]
            for tag, value in series.items():
                slice_2d.SetMetaData(tag, value)
            position = image.TransformIndexToPhysicalPoint((0, 0, k))
            slice_2d.SetMetaData("0020|0032", "\\".join(_ds(v) for v in position))
            slice_2d.SetMetaData("0020|0013", str(k + 1))
            slice_2d.SetMetaData("0008|0018", new_uid())
            name = f"slice_{k:04d}.dcm"
            writer.SetFileName(str(tmp / name))
            writer.Execute(slice_2d)
            names.append(name)
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        os.replace(tmp, folder)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    logger.info("saved labels as a DICOM series of %d slices in %s", len(names), folder)
    return [folder / n for n in names]


def _normal_ordered(image):
    """``image`` with its k axis along row x column (the order DICOM readers sort by)."""
    d = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    if float(np.dot(np.cross(d[:, 0], d[:, 1]), d[:, 2])) >= 0:
        return image
    import SimpleITK as sitk

    flipped = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[::-1].copy())
    flipped.SetSpacing(image.GetSpacing())
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint((0, 0, image.GetDepth() - 1)))
    d[:, 2] *= -1.0
    flipped.SetDirection(tuple(float(v) for v in d.reshape(-1)))
    return flipped
