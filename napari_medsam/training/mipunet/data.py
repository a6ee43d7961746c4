"""Bone-labelled CT volumes from ``../shared/data``, split by patient, on the network grid.

The target is **bone**: every TotalSegmentator bone class (vertebrae, sacrum, ribs,
hips, femurs, humeri, scapulae, clavicles, sternum, skull), costal cartilage left
out; in ``spine_tptbox`` the VerSe vertebra and endplate ids. All three labels are
automatic (TotalSegmentator, SPINEPS), never manual ground truth.

Only volumes whose bones are labelled in full are used: ``totalseg_extra/aorta_ct``
labels a single vertebra among its bones, so it would teach that ribs are not bone.
``totalseg_ct`` is a crop of the ``totalseg_ct_full`` patient, so it is in neither
split. The held-out patient is ``ct_dicom20``: never seen in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_medsam.io.volumes import load_volume
from napari_medsam.model.mipunet.grid import network_grid, normalise_ct, to_network_grid

__all__ = [
    "BONE_IDS_TOTALSEG",
    "GridVolume",
    "LabelledVolume",
    "VOLUMES",
    "load_labelled",
    "volumes",
]

#: TotalSegmentator v2 "total" ids of bones (25-50 sacrum and vertebrae, 69-78 limbs and
#: girdles, 91 skull, 92-115 ribs, 116 sternum); 117 costal cartilages is not bone.
BONE_IDS_TOTALSEG = frozenset([*range(25, 51), *range(69, 79), 91, *range(92, 117)])


def _totalseg_bone(labels: np.ndarray) -> np.ndarray:
    return np.isin(labels, sorted(BONE_IDS_TOTALSEG))


def _verse_bone(labels: np.ndarray) -> np.ndarray:
    # VerSe: 1-25 vertebrae, 100+x discs (not bone), 200+x endplates (bone)
    return ((labels >= 1) & (labels < 100)) | ((labels >= 200) & (labels < 300))


@dataclass(frozen=True)
class LabelledVolume:
    """One scan of the table: where it is, whose it is, how bone is read from it."""

    name: str
    image: str
    label: str
    patient: str
    split: str
    bone: Callable[[np.ndarray], np.ndarray]
    source: str
    licence: str


VOLUMES: tuple[LabelledVolume, ...] = (
    LabelledVolume("totalseg_ct_full", "totalseg_ct_full/example_ct.nii.gz",
                   "totalseg_ct_full/example_seg_fast_force_split.nii.gz", "totalseg-example",
                   "train", _totalseg_bone,
                   "TotalSegmentator repository tests/reference_files (automatic labels)", "Apache-2.0"),
    LabelledVolume("spine_tptbox_ct", "spine_tptbox/ct/image.nii.gz", "spine_tptbox/ct/label_vert.nii.gz",
                   "tptbox-ct", "train", _verse_bone,
                   "TPTBox tests (vertebra labels, probably automatic)", "Apache-2.0"),
    LabelledVolume("ct_dicom20", "totalseg_extra/ct_dicom20/image.nii.gz",
                   "totalseg_extra/ct_dicom20/label.nii.gz", "totalseg-dicom20", "heldout",
                   _totalseg_bone, "TotalSegmentator 2.18.0 tests (automatic labels)", "Apache-2.0"),
)  # fmt: skip


def volumes(split: str) -> list[LabelledVolume]:
    """The table's volumes of ``split`` (``"train"`` or ``"heldout"``)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    chosen = [v for v in VOLUMES if v.split == split]
    train = {v.patient for v in VOLUMES if v.split == "train"}
    held = {v.patient for v in VOLUMES if v.split == "heldout"}
    if train & held:  # the split is by patient: one patient never sits on both sides
        raise AssertionError(f"patients on both sides of the split: {sorted(train & held)}")
    return chosen


@dataclass(frozen=True)
class GridVolume:
    """A labelled scan on its scan grid and on the network grid.

    Attributes
    ----------
    name : str
    hu_zyx : (Z, Y, X) array
        CT in HU, display frame, scan grid.
    bone_zyx : (Z, Y, X) bool array
        Target on the scan grid.
    spacing_zyx_mm : tuple of 3 float
    image_net : (d, h, w) float32 array
        Normalised intensities on the network grid.
    target_net : (d, h, w) float32 array
        Bone fraction per network cell (area-resampled), in [0, 1].
    """

    name: str
    hu_zyx: np.ndarray
    bone_zyx: np.ndarray
    spacing_zyx_mm: tuple[float, float, float]
    image_net: np.ndarray
    target_net: np.ndarray


def load_labelled(entry: LabelledVolume, data_root: str | Path, spacing_mm: float) -> GridVolume:
    """Read one table entry and resample it onto the network grid of ``spacing_mm``.

    Raises
    ------
    FileNotFoundError
        The data root or a file is missing.
    ValueError
        Image and labels on different grids.
    """
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}")
    image = load_volume(root / entry.image)
    label = load_volume(root / entry.label)
    if image.data_zyx.shape != label.data_zyx.shape:
        raise ValueError(f"{entry.name}: image {image.data_zyx.shape} and labels "
                         f"{label.data_zyx.shape} are not on one grid")  # fmt: skip
    bone = entry.bone(np.asarray(label.data_zyx))
    grid = network_grid(image.data_zyx.shape, image.spacing_zyx_mm, spacing_mm)
    hu = np.asarray(image.data_zyx, np.float32)
    image_net = normalise_ct(to_network_grid(hu, grid)).numpy()
    target_net = to_network_grid(bone.astype(np.float32), grid, mode="area").numpy()
    return GridVolume(entry.name, hu, bone, tuple(image.spacing_zyx_mm), image_net, target_net)
