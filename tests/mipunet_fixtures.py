"""Synthetic CT for the MIP U-Net tests: a body with a spine, ribs and a contrast vessel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from napari_medsam.model.mipunet.grid import network_grid, normalise_ct, to_network_grid
from napari_medsam.training.mipunet.data import VOLUMES, GridVolume


def synthetic_ct(shape_zyx=(16, 40, 40), seed=0):
    """``(hu_zyx int16, bone_zyx bool)``: air, soft tissue, a bright vessel (not bone), bones."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape_zyx, dtype=np.float32)
    _, h, w = shape_zyx
    cy, cx = (h - 1) / 2 + rng.uniform(-1, 1), (w - 1) / 2 + rng.uniform(-1, 1)
    r = np.hypot((y - cy) / (0.42 * h), (x - cx) / (0.45 * w))
    hu = np.full(shape_zyx, -1000.0, np.float32)
    hu[r < 1] = 40.0
    spine = np.hypot(y - (cy + 0.2 * h), x - cx) < 0.09 * w
    ribs = (r > 0.78) & (r < 0.9) & (y < cy + 0.1 * h) & ((z.astype(int) % 6) < 3)
    vessel = np.hypot(y - (cy - 0.05 * h), x - (cx + 0.12 * w)) < 0.05 * w
    hu[vessel] = 230.0
    bone = spine | ribs
    hu[spine] = 650.0
    hu[ribs] = 420.0
    hu += rng.normal(0, 25, shape_zyx).astype(np.float32)
    return hu.astype(np.int16), bone


def grid_volume(hu, bone, spacing_zyx_mm=(3.0, 3.0, 3.0), spacing_mm=3.0, name="synthetic"):
    """A :class:`GridVolume` made in memory (no files)."""
    grid = network_grid(hu.shape, spacing_zyx_mm, spacing_mm)
    image_net = normalise_ct(to_network_grid(hu.astype(np.float32), grid)).numpy()
    target_net = to_network_grid(bone.astype(np.float32), grid, mode="area").numpy()
    return GridVolume(
        name, hu.astype(np.float32), bone, tuple(spacing_zyx_mm), image_net, target_net
    )


def write_nifti(path: Path, array_zyx: np.ndarray, spacing_zyx_mm=(3.0, 3.0, 3.0)) -> Path:
    """Write a display-frame array as a RAS NIfTI (file axes x, y, z)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([spacing_zyx_mm[2], spacing_zyx_mm[1], spacing_zyx_mm[0], 1.0])
    affine[:3, 3] = (-12.5, 30.0, 7.25)
    nib.save(
        nib.Nifti1Image(np.ascontiguousarray(np.transpose(array_zyx, (2, 1, 0))), affine), str(path)
    )
    return path


def fake_data_root(root: Path) -> Path:
    """A data root with the table's files (synthetic), so that ``train-auto`` runs end to end."""
    label_value = {"totalseg_ct_full": 30, "spine_tptbox_ct": 21, "ct_dicom20": 32}
    for i, entry in enumerate(VOLUMES):
        hu, bone = synthetic_ct((12, 32, 32), seed=i)
        write_nifti(root / entry.image, hu)
        write_nifti(root / entry.label, (bone * label_value[entry.name]).astype(np.uint8))
    return root
