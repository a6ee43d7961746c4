"""One entry point for every scan format: NIfTI (nibabel), NRRD / MetaImage / DICOM (SimpleITK).

:func:`load_volume` returns the same :class:`~napari_medsam.io.nifti.NiftiVolume` for
each format (display frame, spacing, true affine, a NIfTI header), and
:func:`save_labels` writes a display-frame label volume on the source grid in the
format its path asks for:

============================  ========================================
output path                   written as
============================  ========================================
``*.nii``, ``*.nii.gz``       NIfTI (source header kept)
``*.nrrd``, ``*.nhdr``        NRRD (compressed; ``.nhdr`` + ``.raw.gz``)
``*.mha``, ``*.mhd``          MetaImage (compressed; ``.mhd`` + ``.zraw``)
a folder (no suffix)          DICOM series, one file per slice
============================  ========================================

Every format gets the same guarantee: the labels land on the source voxels, with the
source's affine (spacing, origin, direction) to 1e-6 mm.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_medsam.io.atomic import atomic_path
from napari_medsam.io.errors import NIFTI_SUFFIXES, NiftiError, is_nifti_path

__all__ = [
    "SCAN_SUFFIXES",
    "SITK_SUFFIXES",
    "is_scan_path",
    "labels_format",
    "load_volume",
    "save_labels",
    "volume_stem",
]

#: File suffixes read and written through SimpleITK.
SITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Every file suffix :func:`load_volume` reads (a DICOM series is a folder).
SCAN_SUFFIXES = NIFTI_SUFFIXES + SITK_SUFFIXES
_DETACHED = (".nhdr", ".mhd")  # header + separate data file


def is_scan_path(path: Any) -> bool:
    """Whether ``path`` names a readable kind of scan: a known suffix, or a DICOM folder."""
    if not isinstance(path, str | os.PathLike):
        return False
    name = os.fspath(path)
    if not isinstance(name, str):
        return False
    if name.lower().endswith(SCAN_SUFFIXES):
        return True
    from napari_medsam.io.sitk_io import looks_like_dicom_dir

    return looks_like_dicom_dir(name)


def volume_stem(path: str | os.PathLike) -> str:
    """Layer name of a scan: the file name without its suffix, or the folder's name."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", *NIFTI_SUFFIXES, *SITK_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def load_volume(path: str | os.PathLike, *, check_memory: bool = True):
    """Read a 3D scan of any supported format, reoriented for display.

    Parameters
    ----------
    path : str or PathLike
        ``.nii``/``.nii.gz``, ``.nrrd``/``.nhdr``, ``.mha``/``.mhd``, or a folder with
        one DICOM series (the largest is taken when there are several).
    check_memory : bool
        Refuse volumes larger than the available memory.

    Returns
    -------
    NiftiVolume
        As :func:`napari_medsam.io.nifti.load_nifti` returns it.

    Raises
    ------
    NiftiError
        Missing, unreadable, unsupported or non-3D input.
    """
    from napari_medsam.io.nifti import _check_memory, load_nifti, volume_from_file_array

    path = Path(path)
    if is_nifti_path(path):
        return load_nifti(path, check_memory=check_memory)
    if not path.exists():
        raise NiftiError(f"{path}: no such file or folder")
    if not (path.is_dir() or path.name.lower().endswith(SITK_SUFFIXES)):
        raise NiftiError(
            f"{path.name}: unsupported file type; open NIfTI (.nii, .nii.gz), NRRD "
            "(.nrrd, .nhdr), MetaImage (.mha, .mhd) or a DICOM series folder"
        )
    from napari_medsam.io.sitk_io import read_sitk_file_array

    array_ijk, affine, header, tags = read_sitk_file_array(path)
    if check_memory:
        _check_memory(int(array_ijk.size), array_ijk.dtype.itemsize, path)
    return volume_from_file_array(array_ijk, affine, header, path, tags or None)


def labels_format(path: str | os.PathLike) -> str:
    """``"nifti"``, ``"sitk"`` or ``"dicom"`` for an output path (see the module table).

    Raises
    ------
    NiftiError
        A suffix that is no labels format (``x.png``), or a path whose folder is missing.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.parent.is_dir():
        raise NiftiError(f"{path.parent}: no such folder (create it first)")
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(SITK_SUFFIXES):
        return "sitk"
    if path.is_dir() or (not path.exists() and "." not in name):
        return "dicom"
    raise NiftiError(
        f"{path.name}: labels are saved as .nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd, or a "
        "folder name (DICOM series)"
    )


def save_labels(
    labels_zyx: np.ndarray, path: str | os.PathLike, metadata: Mapping[str, Any]
) -> Path:
    """Write a display-frame label volume on its source grid, format from ``path``.

    Parameters
    ----------
    labels_zyx : (Z, Y, X) integer array
        Labels in display orientation.
    path : str or PathLike
        Output (see the module table). Its folder must exist. Written through a
        temporary file (or folder) and renamed: a failure leaves no partial output.
    metadata : mapping
        Source grid (``affine_ras``, ``ornt``, ``file_shape``; ``header`` for NIfTI).

    Returns
    -------
    pathlib.Path
        The file (or DICOM folder) written.

    Raises
    ------
    NiftiError
        Bad path or suffix, missing grid, shape mismatch, non-integer labels, write failure.
    """
    from napari_medsam.io.nifti_save import file_order_labels, save_labels_nifti

    path = Path(path)
    kind = labels_format(path)
    if kind == "nifti":
        return save_labels_nifti(labels_zyx, path, metadata)
    labels_ijk = file_order_labels(labels_zyx, metadata)
    from napari_medsam.io.sitk_io import write_sitk_labels

    if kind == "dicom":
        write_sitk_labels(labels_ijk, path, metadata, dicom=True)
        return path
    suffix = next(s for s in SITK_SUFFIXES if path.name.lower().endswith(s))
    if suffix not in _DETACHED:
        with atomic_path(path) as tmp:  # temporary file, fsync, rename
            write_sitk_labels(labels_ijk, tmp, metadata, dicom=False)
        return path
    # A header and a data file: write both under their final names in a temporary
    # folder, then move the data first and the header last.
    tmp_dir = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.partial"
    tmp_dir.mkdir()
    try:
        write_sitk_labels(labels_ijk, tmp_dir / path.name, metadata, dicom=False)
        written = sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name)
        for item in written:
            os.replace(item, path.parent / item.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path
