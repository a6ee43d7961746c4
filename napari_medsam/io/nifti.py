"""Load NIfTI volumes for display and write label maps back on the source grid.

The display array is ``(z, y, x)``: z inferior -> superior, y anterior -> posterior, x
patient right -> left (see :mod:`napari_medsam.io.orientation`). Reorientation uses only
flips and transposes, so :func:`save_labels_nifti` inverts it exactly and writes with the
source affine and a copy of the source header.
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_medsam.io.errors import (
    NIFTI_SUFFIXES,
    NiftiError,
    ObliqueAffineWarning,
    is_nifti_path,
    nifti_stem,
)
from napari_medsam.io.nifti_save import metadata_for_display_grid, save_labels_nifti
from napari_medsam.io.orientation import (
    display_spacing,
    file_ijk_to_zyx,
    file_to_display_ornt,
    is_oblique,
    reorient,
    slice_axis_of_file,
    zyx_to_file_ijk,
)

__all__ = [
    "NIFTI_SUFFIXES",
    "NiftiError",
    "NiftiVolume",
    "ObliqueAffineWarning",
    "file_ijk_to_zyx",
    "is_nifti_path",
    "load_nifti",
    "metadata_for_display_grid",
    "save_labels_nifti",
    "slice_axis_of_file",
    "volume_from_file_array",
    "zyx_to_file_ijk",
]

logger = logging.getLogger(__name__)

# Reading makes the raw array and one reoriented C-contiguous copy.
_MEMORY_COPIES = 2


@dataclass(frozen=True, eq=False)
class NiftiVolume:
    """A NIfTI volume reoriented for display.

    Attributes
    ----------
    data_zyx : (Z, Y, X) array
        Voxels in the stored dtype (float32 only when the header asks for non-integer
        scaling), C-contiguous, display orientation.
    spacing_zyx_mm : tuple of 3 float
        Voxel size along the display axes, mm.
    affine_ras : (4, 4) float64 array
        The file's voxel (i, j, k) -> RAS+ mm affine, unchanged (also when oblique).
    file_shape : tuple of 3 int
        Shape of the file's array (trailing singleton dimensions dropped).
    ornt : (3, 2) int64 array
        nibabel orientation transform, file -> display.
    header : nibabel.nifti1.Nifti1Header
        Copy of the file's header.
    oblique : bool
        Whether the affine is not axis-aligned (display used the closest axes).
    path : pathlib.Path or None
        Source file.
    has_nonfinite : bool
        Whether float data contains NaN or inf.
    source_tags : dict or None
        DICOM study tags (patient, study and frame-of-reference UIDs) of a DICOM source.
    """

    data_zyx: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]
    affine_ras: np.ndarray
    file_shape: tuple[int, int, int]
    ornt: np.ndarray
    header: Any
    oblique: bool = False
    path: Path | None = None
    has_nonfinite: bool = False
    source_tags: dict[str, str] | None = None

    @property
    def name(self) -> str:
        """Layer name: the file name without its suffix (``.nii.gz``, ``.nrrd`` ...)."""
        return nifti_stem(self.path) if self.path is not None else "volume"

    def layer_metadata(self) -> dict[str, Any]:
        """Fresh dict for napari ``layer.metadata`` holding the source grid.

        Keys: ``affine_ras`` ((4, 4) float64), ``header`` (header copy), ``ornt`` ((3, 2)
        int64, file -> display), ``file_shape``, ``spacing_zyx_mm``, ``source_path`` (str
        or None), ``oblique``. :func:`save_labels_nifti` needs exactly these.
        """
        return {
            "affine_ras": np.array(self.affine_ras, dtype=np.float64),
            "header": self.header.copy(),
            "ornt": np.array(self.ornt, dtype=np.int64),
            "file_shape": tuple(self.file_shape),
            "spacing_zyx_mm": tuple(self.spacing_zyx_mm),
            "source_path": None if self.path is None else str(self.path),
            "oblique": bool(self.oblique),
            **({"dicom_tags": dict(self.source_tags)} if self.source_tags else {}),
        }


def _spatial_shape(shape: Sequence[int], path: Path) -> tuple[int, int, int]:
    if len(shape) < 3:
        raise NiftiError(
            f"{path.name}: image is {len(shape)}D {tuple(shape)}; a 3D volume is needed"
        )
    extra = tuple(int(s) for s in shape[3:])
    if any(s != 1 for s in extra):
        raise NiftiError(
            f"{path.name}: image has shape {tuple(shape)} ({int(np.prod(extra))} volumes or "
            "components); only 3D volumes are supported: extract one volume first"
        )
    spatial = tuple(int(s) for s in shape[:3])
    if min(spatial) < 1:
        raise NiftiError(f"{path.name}: empty image shape {tuple(shape)}")
    return spatial  # type: ignore[return-value]


def _check_memory(n_voxels: int, itemsize: int, path: Path) -> None:
    try:
        import psutil  # lazy: installed with napari, optional for the library
    except ImportError:
        return
    need = n_voxels * itemsize * _MEMORY_COPIES
    available = int(psutil.virtual_memory().available)
    if need > available:
        raise NiftiError(
            f"{path.name}: reading needs about {need / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB of memory is available"
        )


def _read_array(img: nib.Nifti1Image, path: Path) -> np.ndarray:
    """Voxels in the stored dtype unless the header's scaling is not the identity."""
    proxy = img.dataobj
    if not nib.is_proxy(proxy):
        return np.asanyarray(proxy)
    slope = float(getattr(proxy, "slope", 1.0))
    inter = float(getattr(proxy, "inter", 0.0))
    raw = np.asanyarray(proxy.get_unscaled())
    if slope == 1.0 and inter == 0.0:
        return raw
    if raw.dtype.kind in "iu" and slope.is_integer() and inter.is_integer() and raw.size:
        bounds = np.array([raw.min(), raw.max()], dtype=np.float64) * slope + inter
        for dtype in (np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= bounds.min() and bounds.max() <= info.max:
                out = raw.astype(np.int64) * int(slope) + int(inter)
                logger.info(
                    "%s: applied integer scaling (slope %g, inter %g) -> %s",
                    path.name,
                    slope,
                    inter,
                    np.dtype(dtype).name,
                )
                return out.astype(dtype)
    logger.info("%s: applied scaling (slope %g, inter %g) -> float32", path.name, slope, inter)
    return (raw.astype(np.float32) * np.float32(slope) + np.float32(inter)).astype(np.float32)


def load_nifti(path: str | os.PathLike, *, check_memory: bool = True) -> NiftiVolume:
    """Read a 3D NIfTI file and reorient it for display.

    Parameters
    ----------
    path : str or PathLike
        ``.nii`` or ``.nii.gz`` file.
    check_memory : bool
        Refuse volumes larger than the available memory (needs psutil; skipped without).

    Returns
    -------
    NiftiVolume
        ``data_zyx`` is (Z, Y, X) with z towards superior, y towards posterior, x towards
        patient left, in the stored dtype.

    Raises
    ------
    NiftiError
        Missing, corrupt or truncated file; not 3D (2D, or several volumes); complex or
        RGB voxels; too big for memory.
    """
    path = Path(path)
    if path.is_dir():
        raise NiftiError(f"{path}: is a directory, not a NIfTI file")
    if not path.is_file():
        raise NiftiError(f"{path}: no such file")
    try:
        # mmap=False: the display array must be private memory napari can paint into.
        img = nib.load(path, mmap=False)
    except Exception as exc:  # nibabel raises many types for bad headers
        raise NiftiError(f"{path.name}: not a readable NIfTI file ({exc})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise NiftiError(f"{path.name}: not a NIfTI image (nibabel read {type(img).__name__})")
    file_shape = _spatial_shape(img.shape, path)
    dtype = img.get_data_dtype()
    if dtype.kind == "c" or dtype.fields is not None or dtype.kind not in "biuf":
        raise NiftiError(f"{path.name}: unsupported voxel type {dtype} (complex or RGB)")
    if check_memory:
        scaled = (
            float(getattr(img.dataobj, "slope", 1.0)),
            float(getattr(img.dataobj, "inter", 0.0)),
        )
        itemsize = dtype.itemsize if scaled == (1.0, 0.0) else 8  # scaling computes in 64 bits
        _check_memory(int(np.prod(file_shape)), itemsize, path)

    try:
        raw = _read_array(img, path)
    except MemoryError as exc:
        raise NiftiError(f"{path.name}: not enough memory to read the volume") from exc
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise NiftiError(f"{path.name}: truncated or corrupt voxel data ({exc})") from exc
    return volume_from_file_array(raw.reshape(file_shape), img.affine, img.header, path)


def volume_from_file_array(
    raw: np.ndarray,
    affine_ras: np.ndarray,
    header: Any,
    path: Path | None,
    source_tags: dict[str, str] | None = None,
) -> NiftiVolume:
    """Reorient a file-order array for display: the part of :func:`load_nifti` after reading.

    Shared by every format (NIfTI, and NRRD / MetaImage / DICOM through SimpleITK), so
    they all get the same display frame, spacing and oblique handling.

    Parameters
    ----------
    raw : (I, J, K) array
        Voxels in the file's index order.
    affine_ras : (4, 4) array
        Voxel (i, j, k) -> RAS+ mm.
    header : nibabel.Nifti1Header
        Kept (copied) for writing labels as NIfTI.
    path : Path or None
        Source file or folder.
    source_tags : dict, optional
        DICOM study tags of a DICOM source.
    """
    name = path.name if path is not None else "volume"
    file_shape = tuple(int(s) for s in raw.shape)
    affine = np.array(affine_ras, dtype=np.float64)
    try:
        ornt = file_to_display_ornt(affine)
    except ValueError as exc:
        raise NiftiError(f"{name}: unusable affine ({exc})") from exc
    oblique = is_oblique(affine)
    if oblique:
        warnings.warn(
            f"{name}: oblique affine (voxel axes not aligned with RAS); showing the "
            "closest axes. Saved labels keep the true affine.",
            ObliqueAffineWarning,
            stacklevel=3,
        )
    data_zyx = reorient(raw, ornt)
    del raw

    has_nonfinite = False
    if data_zyx.dtype.kind == "f" and not np.isfinite(data_zyx).all():
        has_nonfinite = True
        logger.warning(
            "%s: %d NaN/inf voxels kept as they are (windowing shows them as 0)",
            name,
            int(np.count_nonzero(~np.isfinite(data_zyx))),
        )
    spacing = display_spacing(affine, ornt)
    logger.info(
        "loaded %s: file shape %s %s -> display zyx %s, spacing %s mm",
        name,
        file_shape,
        data_zyx.dtype,
        data_zyx.shape,
        spacing,
    )
    return NiftiVolume(
        data_zyx=data_zyx,
        spacing_zyx_mm=spacing,
        affine_ras=affine,
        file_shape=file_shape,
        ornt=ornt,
        header=header.copy(),
        oblique=oblique,
        path=path,
        has_nonfinite=has_nonfinite,
        source_tags=source_tags,
    )
