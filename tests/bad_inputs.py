"""Fixtures of the standing bad-input suite (tests/test_bad_input_*.py): files a careless or
unlucky user hands the program, built small on the fly."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

AFFINE = np.diag([-2.0, -2.0, 3.0, 1.0])
FILE_SHAPE = (40, 36, 6)  # (i, j, k); k is the slice axis


def write_nifti(path: Path, data: np.ndarray, affine=AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def ct_volume() -> np.ndarray:
    """A soft-tissue body with a bright organ, (i, j, k) int16 HU."""
    i, j = np.mgrid[: FILE_SHAPE[0], : FILE_SHAPE[1]]
    body = ((i - 20) / 18) ** 2 + ((j - 18) / 16) ** 2 <= 1
    organ = ((i - 15) / 6) ** 2 + ((j - 20) / 7) ** 2 <= 1
    plane = np.where(body, 40, -1000) + np.where(organ, 110, 0)
    return np.repeat(plane[..., None], FILE_SHAPE[2], axis=2).astype(np.int16)


def organ_labels() -> np.ndarray:
    i, j = np.mgrid[: FILE_SHAPE[0], : FILE_SHAPE[1]]
    organ = ((i - 15) / 6) ** 2 + ((j - 20) / 7) ** 2 <= 1
    labels = np.zeros(FILE_SHAPE, np.uint8)
    labels[..., 1:5] = organ[..., None]
    return labels


ORGAN_BOX = "9,13,21,27,2"  # i0,j0,i1,j1,k around the organ


class Files:
    """The suite's input files in one folder, and their digests to prove nothing changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.scan = write_nifti(root / "scan.nii.gz", ct_volume())
        self.labels = write_nifti(root / "labels.nii.gz", organ_labels())
        self.mirrored = write_nifti(
            root / "mirrored.nii.gz", organ_labels()[::-1].copy(), np.diag([2.0, -2, 3, 1])
        )

    def digests(self) -> dict[str, str]:
        """name -> sha1 of every file under the folder."""
        return {
            str(p.relative_to(self.root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


def tiny_sam_state() -> dict:
    from napari_medsam.model.registry import build_model
    from napari_medsam.model.sam import tiny_sam_config

    torch.manual_seed(0)
    return build_model(tiny_sam_config()).state_dict()


def save_state(path: Path, state) -> Path:
    torch.save(state, path)
    return path


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def pickled_code_checkpoint(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"model": _Evil()}))
    return path
