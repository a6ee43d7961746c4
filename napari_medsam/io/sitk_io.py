"""NRRD, MetaImage and DICOM series through SimpleITK, on the same terms as NIfTI.

A SimpleITK image is turned into exactly what :func:`napari_medsam.io.nifti.load_nifti`
returns: the file array in (i, j, k) order (ITK's x, y, z index), its voxel -> RAS+
affine, the same reorientation to the display (z, y, x) frame, and a NIfTI header
made from the affine. Labels are written back on the source grid with the source's
spacing, origin and direction, so the orientation guarantees of the NIfTI path hold
for these formats too.

Frames: ITK's physical space is LPS (x towards patient left, y towards posterior);
``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``, with
``affine_lps[:3, :3] = direction @ diag(spacing)`` and ``affine_lps[:3, 3] = origin``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_medsam.io.errors import NiftiError

__all__ = [
    "LPS_TO_RAS",
    "affine_from_sitk",
    "read_sitk_file_array",
    "sitk_geometry_from_affine",
]

logger = logging.getLogger(__name__)

#: Flips x and y: LPS <-> RAS (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# DICOM tags kept from a source series so that labels written as DICOM join its study.
DICOM_KEPT_TAGS = {
    "0010|0010": "patient_name",
    "0010|0020": "patient_id",
    "0020|000d": "study_instance_uid",
    "0020|0052": "frame_of_reference_uid",
    "0008|0020": "study_date",
    "0020|0010": "study_id",
}


def _sitk():
    try:
        import SimpleITK as sitk  # lazy: only these formats need it
    except ImportError as exc:  # pragma: no cover - a dependency
        raise NiftiError("NRRD, MetaImage and DICOM need SimpleITK: pip install SimpleITK") from exc
    return sitk


def sitk_message(exc: BaseException) -> str:
    """The one informative line of a (multi-line) SimpleITK/ITK error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("itk::", "Description: itk::")):
            return line.removeprefix("Description: ")
    return lines[-1] if lines else type(exc).__name__


def affine_from_sitk(image) -> np.ndarray:
    """(4, 4) voxel (i, j, k) -> RAS+ mm affine of a 3D SimpleITK image."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    affine_lps = np.eye(4)
    affine_lps[:3, :3] = direction * spacing[None, :]
    affine_lps[:3, 3] = np.asarray(image.GetOrigin(), dtype=np.float64)
    return LPS_TO_RAS @ affine_lps


def sitk_geometry_from_affine(
    affine_ras: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(spacing, origin, direction)`` in ITK's LPS terms for a voxel -> RAS+ affine.

    Inverse of :func:`affine_from_sitk` for any affine whose columns are orthogonal
    (what ITK can store); the direction is the column-normalised 3x3 part.
    """
    affine_lps = LPS_TO_RAS @ np.asarray(affine_ras, dtype=np.float64)
    rzs = affine_lps[:3, :3]
    spacing = np.linalg.norm(rzs, axis=0)
    if np.any(spacing <= 0):
        raise NiftiError("the source grid's affine has a zero-length voxel axis")
    direction = rzs / spacing[None, :]
    return (
        tuple(float(s) for s in spacing),
        tuple(float(o) for o in affine_lps[:3, 3]),
        tuple(float(d) for d in direction.reshape(-1)),
    )


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def looks_like_dicom_dir(path: Any, probe: int = 16) -> bool:
    """Whether ``path`` is a folder holding DICOM files (checks up to ``probe`` files)."""
    try:
        folder = Path(path)
        if not folder.is_dir():
            return False
        for n, child in enumerate(sorted(folder.iterdir())):
            if n >= probe:
                break
            if child.is_file() and _is_dicom_file(child):
                return True
    except (OSError, TypeError):
        return False
    return False


def _read_dicom_series(folder: Path):
    sitk = _sitk()
    ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ())
    if not ids:
        raise NiftiError(f"{folder.name}: no DICOM series in this folder")
    files_of = {sid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in ids}
    chosen = max(ids, key=lambda sid: len(files_of[sid]))
    if len(ids) > 1:
        logger.warning(
            "%s: %d DICOM series; opening the largest (%d files, series %s)",
            folder.name,
            len(ids),
            len(files_of[chosen]),
            chosen,
        )
    files = files_of[chosen]
    if len(files) < 2:
        raise NiftiError(
            f"{folder.name}: the DICOM series has {len(files)} slice; a 3D volume is needed"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    reader.LoadPrivateTagsOff()
    image = reader.Execute()
    tags = {}
    for tag, key in DICOM_KEPT_TAGS.items():
        if reader.HasMetaDataKey(0, tag):
            tags[key] = reader.GetMetaData(0, tag).strip()
    tags["series_instance_uid"] = chosen
    return image, tags


def _file_array(image, name: str) -> np.ndarray:
    sitk = _sitk()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise NiftiError(
            f"{name}: {image.GetNumberOfComponentsPerPixel()} components per voxel "
            "(RGB or vector); only scalar volumes are supported"
        )
    size = tuple(int(s) for s in image.GetSize())
    if image.GetDimension() == 4 and size[3] == 1:
        image = image[:, :, :, 0]
        size = size[:3]
    if image.GetDimension() != 3:
        raise NiftiError(f"{name}: image is {image.GetDimension()}D {size}; a 3D volume is needed")
    if min(size) < 1:
        raise NiftiError(f"{name}: empty image shape {size}")
    array_kji = sitk.GetArrayFromImage(image)  # numpy order: (k, j, i)
    if array_kji.dtype.kind == "c" or array_kji.dtype.kind not in "biuf":
        raise NiftiError(f"{name}: unsupported voxel type {array_kji.dtype}")
    if array_kji.dtype == np.float64:
        array_kji = array_kji.astype(np.float32)  # display and model work in float32
    return array_kji.transpose(2, 1, 0), image


def read_sitk_file_array(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, Any, dict]:
    """Read an NRRD / MetaImage file or a DICOM series folder.

    Parameters
    ----------
    path : str or PathLike
        ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd`` file, or a folder of DICOM files.

    Returns
    -------
    file_array_ijk : (I, J, K) array
        Voxels in file index order (ITK's x, y, z index), stored dtype (float64 ->
        float32); a transposed view.
    affine_ras : (4, 4) float64
        Voxel (i, j, k) -> RAS+ mm.
    header : nibabel.Nifti1Header
        Made from the affine, shape and dtype (so labels can also be saved as NIfTI).
    tags : dict
        DICOM study tags of a series (empty for other formats).

    Raises
    ------
    NiftiError
        Missing, unreadable or non-3D input; several components per voxel.
    """
    sitk = _sitk()
    path = Path(path)
    tags: dict = {}
    try:
        if path.is_dir():
            image, tags = _read_dicom_series(path)
        elif path.is_file():
            image = sitk.ReadImage(str(path))
        else:
            raise NiftiError(f"{path}: no such file")
    except RuntimeError as exc:
        raise NiftiError(f"{path.name}: not a readable image ({sitk_message(exc)})") from exc
    try:
        array_ijk, image = _file_array(image, path.name)
    except RuntimeError as exc:
        raise NiftiError(f"{path.name}: unreadable voxel data ({sitk_message(exc)})") from exc
    affine = affine_from_sitk(image)
    header = nib.Nifti1Header()
    header.set_data_shape(array_ijk.shape)
    header.set_data_dtype(array_ijk.dtype)
    header.set_zooms(tuple(float(s) for s in image.GetSpacing()))
    header.set_xyzt_units("mm")
    header.set_qform(affine, code="scanner")
    header.set_sform(affine, code="scanner")
    return array_ijk, affine, header, tags


def write_sitk_labels(
    labels_ijk: np.ndarray, path: Path, metadata: Mapping[str, Any], dicom: bool
) -> None:
    """Write a file-order label array with the grid's geometry (``path`` may not exist yet).

    Parameters
    ----------
    labels_ijk : (I, J, K) integer array
        Labels in the source file's index order, final dtype.
    path : Path
        Target file (``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``) or, with ``dicom``, a
        new folder for the series.
    metadata : mapping
        Source grid (``affine_ras``, optional ``dicom_tags``).
    dicom : bool
        Write a DICOM series (one file per k slice) instead of one image file.
    """
    sitk = _sitk()
    spacing, origin, direction = sitk_geometry_from_affine(metadata["affine_ras"])
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels_ijk.transpose(2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    try:
        if dicom:
            from napari_medsam.io.sitk_dicom import write_dicom_series

            write_dicom_series(image, path, metadata.get("dicom_tags") or {})
        else:
            sitk.WriteImage(image, str(path), True)  # compressed
    except RuntimeError as exc:
        raise NiftiError(f"{path.name}: could not write labels ({sitk_message(exc)})") from exc
