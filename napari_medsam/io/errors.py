"""Errors, warnings and file-name rules shared by the NIfTI reader and writer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["NIFTI_SUFFIXES", "NiftiError", "ObliqueAffineWarning", "is_nifti_path", "nifti_stem"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


class NiftiError(ValueError):
    """A NIfTI file cannot be read or written; the message says why."""


class ObliqueAffineWarning(UserWarning):
    """The file's voxel axes are not aligned with the RAS axes; display uses the closest."""


def is_nifti_path(path: Any) -> bool:
    """Whether ``path`` is a str/Path whose name ends with ``.nii`` or ``.nii.gz``."""
    if not isinstance(path, str | os.PathLike):
        return False
    name = os.fspath(path)
    return isinstance(name, str) and name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """File name without ``.nii.gz`` / ``.nii`` (the layer name)."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem
