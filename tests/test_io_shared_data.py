"""Round trips and layer types on every real NIfTI in ../shared/data (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medsam.io.napari_reader import napari_get_reader
from napari_medsam.io.nifti import file_ijk_to_zyx, load_nifti, save_labels_nifti
from napari_medsam.prompts.intensity import auto_window

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FILES = sorted(p for p in DATA.glob("*/*") if p.name.endswith((".nii", ".nii.gz")))

pytestmark = pytest.mark.skipif(not FILES, reason=f"no shared data at {DATA}")

# Which files are label maps, and which images are CT (the rest are MR).
LABEL_FILES = {
    "aal.nii.gz",
    "lung1_label.nii.gz",
    "example_seg.nii.gz",
    "example_seg_fast.nii.gz",
    "example_seg_roi_subset.nii.gz",
    "example_seg_fast_force_split.nii.gz",
}
CT_FILES = {"lung1_image.nii.gz", "example_ct_sm.nii.gz", "example_ct.nii.gz"}


def _is_label_file(path: Path) -> bool:
    return path.name in LABEL_FILES or "label" in path.name  # label.nii.gz, ABD_001_label...


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_round_trip_on_source_grid(tmp_path, path):
    src = nib.load(path)
    file_array = np.asarray(src.dataobj)
    vol = load_nifti(path)
    assert vol.data_zyx.dtype == src.get_data_dtype()  # stored dtype kept
    assert vol.file_shape == src.shape[:3]
    if _is_label_file(path):
        labels_zyx, expected = vol.data_zyx, file_array
        out = tmp_path / "labels.nii.gz"
    else:
        # A derived label volume: every voxel's value must land where it came from.
        labels_zyx = (vol.data_zyx.astype(np.int64) % 251).astype(np.uint8)
        expected = (file_array.astype(np.int64) % 251).astype(np.uint8)
        out = tmp_path / "labels.nii"
    save_labels_nifti(labels_zyx, out, vol.layer_metadata())

    back = nib.load(out)
    assert back.shape == src.shape[:3]
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-6)
    assert int(back.header["sform_code"]) == int(src.header["sform_code"])
    assert int(back.header["qform_code"]) == int(src.header["qform_code"])
    reread = np.asarray(back.dataobj)
    assert reread.dtype.kind in "iu"
    np.testing.assert_array_equal(reread, expected)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reader_layer_type_and_window(path):
    reader = napari_get_reader(str(path))
    assert reader is not None
    [(data, kwargs, layer_type)] = reader(str(path))
    assert layer_type == ("labels" if _is_label_file(path) else "image")
    assert kwargs["name"] == path.name.removesuffix(".nii.gz").removesuffix(".nii")
    src = nib.load(path)
    zooms = src.header.get_zooms()[:3]
    assert sorted(kwargs["scale"]) == pytest.approx(sorted(zooms), abs=1e-4)
    assert kwargs["metadata"]["source_path"] == str(path)
    if layer_type == "image":
        window = auto_window(data)
        assert window.kind == ("ct" if path.name in CT_FILES else "mr")
        assert kwargs["contrast_limits"] == window.contrast_limits
        if path.name in CT_FILES:
            assert kwargs["contrast_limits"] == (-160.0, 240.0)


IMAGE_FILES = [p for p in FILES if not _is_label_file(p)]


@pytest.mark.parametrize("path", IMAGE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_images_named_like_labels_still_open_as_images(tmp_path, path):
    """Issue 12 item 8: a scan called *_masked, atlas*, seg* is an image, not labels."""
    stem = path.name.removesuffix(".nii.gz").removesuffix(".nii")
    for name in (f"{stem}_masked", f"atlas_{stem}", f"seg_{stem}", f"{stem}_mask"):
        link = tmp_path / f"{name}.nii.gz"
        link.symlink_to(path)
        [(_, kwargs, layer_type)] = napari_get_reader(str(link))(str(link))
        assert layer_type == "image", name
        assert kwargs["name"] == name


def test_totalseg_anatomy_lands_where_expected():
    """Liver on the patient's right (small x), spine posterior (large y), lungs superior."""
    seg = DATA / "totalseg_ct_full" / "example_seg_fast_force_split.nii.gz"
    if not seg.exists():
        pytest.skip("totalseg_ct_full missing")
    labels = load_nifti(seg).data_zyx

    def centroid(label_id):
        return np.argwhere(labels == label_id).mean(axis=0)

    liver, spleen, l4, bladder = centroid(5), centroid(1), centroid(28), centroid(21)
    lung = centroid(14)
    assert liver[2] < spleen[2]  # liver patient-right of spleen: smaller x
    assert l4[1] > liver[1]  # vertebra posterior to liver: larger y
    assert lung[0] > liver[0] > bladder[0]  # superior is larger z


def test_ijk_mapping_matches_the_arrays():
    path = DATA / "totalseg_ct" / "example_ct_sm.nii.gz"
    if not path.exists():
        pytest.skip("totalseg_ct missing")
    file_array = np.asarray(nib.load(path).dataobj)
    vol = load_nifti(path)
    meta = vol.layer_metadata()
    rng = np.random.default_rng(0)
    ijk = np.stack([rng.integers(0, n, 50) for n in file_array.shape], axis=-1)
    zyx = file_ijk_to_zyx(ijk, meta)
    np.testing.assert_array_equal(vol.data_zyx[tuple(zyx.T)], file_array[tuple(ijk.T)])
