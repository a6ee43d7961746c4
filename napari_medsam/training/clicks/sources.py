"""The click model's training and held-out volumes, as paths under a data root.

Every file is a real scan with labels; the split is by **volume** (a patient, or a
patient's every sequence, is wholly train or wholly held out). Licences: see the
model card written next to the trained weights (:data:`SOURCES_CARD`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VolumeSource:
    """One scan and its labels.

    Attributes
    ----------
    name : str
        Unique id (folder/series).
    image, labels : str
        Paths relative to the data root.
    kind : str
        "ct" (HU), "ct8" (CT already windowed to uint8), "mr" (percentile window), "pet".
    patient : str
        Group id: every volume of one patient shares it (the split unit).
    split : str
        "train" or "heldout".
    contiguous : bool
        Whether neighbouring slices are neighbours in the body (False for BTCV's
        sparse slices).
    label_ids : tuple of int
        Labels to use (empty: all present).
    """

    name: str
    image: str
    labels: str
    kind: str
    patient: str
    split: str = "train"
    contiguous: bool = True
    label_ids: tuple[int, ...] = ()


def _btcv(number: int, split: str) -> VolumeSource:
    stem = f"btcv2d/ABD_{number:03d}"
    return VolumeSource(
        f"btcv_{number:03d}", f"{stem}_image.nii.gz", f"{stem}_label.nii.gz", "ct8",
        f"btcv{number}", split, contiguous=False,
    )


def _series(folder: str, names: tuple[str, ...], kind: str, patient: str, split: str,
            label: str = "label.nii.gz") -> list[VolumeSource]:
    return [
        VolumeSource(f"{folder}/{n}".replace("/", "_"), f"{folder}/{n}", f"{folder}/{label}",
                     kind, patient, split)
        for n in names
    ]


_BTCV_TRAIN = (1, 2, 3, 4, 5, 6, 7, 9, 10, 21, 22, 23, 24, 25)
_BTCV_HELDOUT = (26, 27, 28, 29, 30)
_AAL_DEEP = (37, 38, 71, 72, 73, 74, 75, 76, 77, 78)

VOLUMES: tuple[VolumeSource, ...] = (
    VolumeSource("totalseg_full", "totalseg_ct_full/example_ct.nii.gz",
                 "totalseg_ct_full/example_seg_fast_force_split.nii.gz", "ct", "ts_example"),
    VolumeSource("aorta_ct", "totalseg_extra/aorta_ct/image.nii.gz",
                 "totalseg_extra/aorta_ct/label.nii.gz", "ct", "ts_aorta"),
    VolumeSource("pulmonary_ct", "totalseg_extra/pulmonary_ct/image.nii.gz",
                 "totalseg_extra/pulmonary_ct/label.nii.gz", "ct", "ts_pulmonary"),
    VolumeSource("sts002_ct", "sts_sarcoma/STS_002_CT/image.nii.gz",
                 "sts_sarcoma/STS_002_CT/label.nii.gz", "ct", "sts002"),
    VolumeSource("sts002_mr", "sts_sarcoma/STS_002_MR_T1/image.nii.gz",
                 "sts_sarcoma/STS_002_MR_T1/label.nii.gz", "mr", "sts002"),
    VolumeSource("sts002_pet", "sts_sarcoma/STS_002_PET/image.nii.gz",
                 "sts_sarcoma/STS_002_PET/label.nii.gz", "pet", "sts002"),
    VolumeSource("spine_ct", "spine_tptbox/ct/image.nii.gz",
                 "spine_tptbox/ct/label_vert.nii.gz", "ct", "tptbox_ct"),
    VolumeSource("spine_mr", "spine_tptbox/mri/image.nii.gz",
                 "spine_tptbox/mri/label_vert.nii.gz", "mr", "tptbox_mr"),
    VolumeSource("freesurfer", "brain_t1_freesurfer/image.nii.gz",
                 "brain_t1_freesurfer/label.nii.gz", "mr", "voxelmorph"),
    VolumeSource("colin27", "mricron_colin27_aal/ch2.nii.gz",
                 "mricron_colin27_aal/aal.nii.gz", "mr", "colin27", label_ids=_AAL_DEEP),
    VolumeSource("pyrad_brain2", "pyrad_brain2/image.nii.gz", "pyrad_brain2/label.nii.gz",
                 "mr", "pyrad_brain2"),
    VolumeSource("breast06", "breast_mri/ucsf_br_06/image.nii.gz",
                 "breast_mri/ucsf_br_06/label.nii.gz", "mr", "ucsf06"),
    VolumeSource("breast_pyrad", "breast_mri/pyrad_breast1/image.nii.gz",
                 "breast_mri/pyrad_breast1/label.nii.gz", "mr", "pyrad_breast1"),
    *(
        VolumeSource(f"cord_{s}", f"spinalcord_mri/{s}/image.nii.gz",
                     f"spinalcord_mri/{s}/label.nii.gz", "mr", "sct")
        for s in ("t1", "t2", "t2s", "mt1")
    ),
    *_series("brats_toolkit/OtherEXampleFromTCIA", ("t1.nii.gz", "t1c.nii.gz", "t2.nii.gz",
             "fla.nii.gz"), "mr", "brats_other", "train", "label_fusion_simple.nii.gz"),
    *(_btcv(n, "train") for n in _BTCV_TRAIN),
    # held out: patients never trained on
    *(_btcv(n, "heldout") for n in _BTCV_HELDOUT),
    VolumeSource("ct_dicom20", "totalseg_extra/ct_dicom20/image.nii.gz",
                 "totalseg_extra/ct_dicom20/label.nii.gz", "ct", "ts_dicom20", "heldout"),
    VolumeSource("sts003_ct", "sts_sarcoma/STS_003_CT/image.nii.gz",
                 "sts_sarcoma/STS_003_CT/label.nii.gz", "ct", "sts003", "heldout"),
    VolumeSource("sts003_mr", "sts_sarcoma/STS_003_MR_T1/image.nii.gz",
                 "sts_sarcoma/STS_003_MR_T1/label.nii.gz", "mr", "sts003", "heldout"),
    VolumeSource("breast08", "breast_mri/ucsf_br_08/image.nii.gz",
                 "breast_mri/ucsf_br_08/label.nii.gz", "mr", "ucsf08", "heldout"),
    *_series("brats_toolkit/TCGA-DU-7294", ("t1c.nii.gz", "fla.nii.gz"), "mr", "brats_7294",
             "heldout", "label_fusion_simple.nii.gz"),
    VolumeSource("lung1", "pyrad_lung1/lung1_image.nii.gz", "pyrad_lung1/lung1_label.nii.gz",
                 "ct", "pyrad_lung1", "heldout"),
)

SOURCES_CARD = {
    "totalseg_ct_full, totalseg_extra": "TotalSegmentator repository and 2.18.0 sdist test "
    "files, Apache-2.0 (labels automatic)",
    "btcv2d": "BTCV (Multi-Atlas Labeling Beyond the Cranial Vault) via IMIS-Bench, CC BY 4.0",
    "sts_sarcoma": "TCIA Soft-tissue-Sarcoma via the mirp test data, CC BY 3.0",
    "spinalcord_mri": "Spinal Cord Toolbox testing data, MIT",
    "breast_mri": "TCIA Breast-MRI-NACT-Pilot via mirp, CC BY 3.0; pyradiomics, BSD-3-Clause",
    "spine_tptbox": "TPTBox tests, Apache-2.0 (labels probably automatic)",
    "brain_t1_freesurfer": "voxelmorph repository data, Apache-2.0 (labels automatic)",
    "brats_toolkit": "TCGA/TCIA via BraTS-Toolkit tutorials, CC BY 3.0 (labels automatic)",
    "pyrad_brain2, pyrad_lung1": "pyradiomics 3.0.1 sdist, BSD-3-Clause",
    "mricron_colin27_aal": "Debian package mricron-data, BSD-3-Clause",
}


def volumes(split: str | None = None) -> list[VolumeSource]:
    """The volumes of one split ("train", "heldout") or all."""
    return [v for v in VOLUMES if split is None or v.split == split]
