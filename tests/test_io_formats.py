"""NRRD, MetaImage and DICOM series: open and save with the NIfTI path's guarantees.

Fixtures are made inside the tests by converting shared NIfTIs with SimpleITK (the
shared data came from NRRD and DICOM originals); tests on them skip without
../shared. Synthetic cases run everywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from napari_medsam.io.napari_reader import napari_get_reader  # noqa: E402
from napari_medsam.io.nifti import NiftiError, load_nifti, zyx_to_file_ijk  # noqa: E402
from napari_medsam.io.napari_writer import write_labels  # noqa: E402
from napari_medsam.io.volumes import is_scan_path, labels_format, load_volume, save_labels  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# (scan, labels): different orientations and sources (NRRD, DICOM, atlas originals)
PAIRS = [
    ("totalseg_ct/example_ct_sm.nii.gz", "totalseg_ct/example_seg.nii.gz"),
    ("pyrad_lung1/lung1_image.nii.gz", "pyrad_lung1/lung1_label.nii.gz"),
    ("spinalcord_mri/t2/image.nii.gz", "spinalcord_mri/t2/label.nii.gz"),
    ("totalseg_extra/ct_dicom20/image.nii.gz", "totalseg_extra/ct_dicom20/label.nii.gz"),
]
FILE_FORMATS = [".nrrd", ".nhdr", ".mha", ".mhd"]
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared data at {DATA}")


@pytest.fixture(autouse=True)
def _quiet_itk():
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    yield
    sitk.ProcessObject_SetGlobalWarningDisplay(True)


def _shared(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"{rel} missing")
    return path


def _small(image, max_slices: int = 12):
    """A crop of at most ``max_slices`` k slices (SimpleITK keeps the geometry right)."""
    k = image.GetSize()[2]
    start = max(0, k // 2 - max_slices // 2)
    return image[:, :, start : start + min(k, max_slices)]


def write_dicom_fixture(image, folder: Path) -> Path:
    """A DICOM series of ``image`` written slice by slice with SimpleITK (the test's own)."""
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = image.GetDirection()
    series = "1.2.826.0.1.3680043.2.1125.777"
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        s.SetMetaData("0020|000e", series)
        s.SetMetaData("0020|000d", "1.2.826.0.1.3680043.2.1125.778")
        s.SetMetaData("0008|0060", "CT")
        s.SetMetaData("0020|0037", "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])))
        pos = image.TransformIndexToPhysicalPoint((0, 0, k))
        s.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in pos))
        s.SetMetaData("0020|0013", str(k + 1))
        s.SetMetaData("0008|0018", f"1.2.826.0.1.3680043.2.1125.779.{k + 1}")
        writer.SetFileName(str(folder / f"im{k:03d}.dcm"))
        writer.Execute(s)
    return folder


def display_affine(volume_or_meta) -> np.ndarray:
    """Display (z, y, x) index -> RAS+ mm: what must agree for the same voxels in the world."""
    meta = volume_or_meta if isinstance(volume_or_meta, dict) else volume_or_meta.layer_metadata()
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    ijk = zyx_to_file_ijk(corners, meta).astype(np.float64)
    world = (meta["affine_ras"] @ np.c_[ijk, np.ones(4)].T).T[:, :3]
    out = np.eye(4)
    out[:3, :3] = (world[1:] - world[0]).T
    out[:3, 3] = world[0]
    return out


@needs_data
@pytest.mark.parametrize("fmt", FILE_FORMATS)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].split("/")[0])
def test_file_formats_open_like_nifti_and_round_trip_labels(tmp_path, fmt, pair):
    scan_nii, labels_nii = (_shared(p) for p in pair)
    for src, stem in ((scan_nii, "scan"), (labels_nii, "labels")):
        sitk.WriteImage(_small(sitk.ReadImage(str(src))), str(tmp_path / f"{stem}{fmt}"), True)
        sitk.WriteImage(_small(sitk.ReadImage(str(src))), str(tmp_path / f"{stem}.nii.gz"))
    ref_scan = load_nifti(tmp_path / "scan.nii.gz")
    ref_labels = load_nifti(tmp_path / "labels.nii.gz")

    scan = load_volume(tmp_path / f"scan{fmt}")
    np.testing.assert_allclose(scan.affine_ras, ref_scan.affine_ras, atol=1e-6)
    np.testing.assert_array_equal(scan.data_zyx, ref_scan.data_zyx)
    assert scan.spacing_zyx_mm == pytest.approx(ref_scan.spacing_zyx_mm, abs=1e-6)

    # the labels as the reader gives them, saved on the scan's grid, in the same format
    [(labels_zyx, kwargs, kind)] = napari_get_reader(str(tmp_path / f"labels{fmt}"))(
        str(tmp_path / f"labels{fmt}")
    )
    assert kind == "labels" and kwargs["name"] == "labels"
    np.testing.assert_array_equal(labels_zyx, ref_labels.data_zyx)
    out = tmp_path / "out" / f"saved{fmt}"
    out.parent.mkdir()
    save_labels(labels_zyx, out, scan.layer_metadata())
    assert not [p for p in out.parent.iterdir() if "partial" in p.name]  # no temporaries left
    back = sitk.ReadImage(str(out))  # read by SimpleITK itself, not by our reader
    original = _small(sitk.ReadImage(str(labels_nii)))
    np.testing.assert_allclose(back.GetOrigin(), original.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), original.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), original.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
    reread = load_volume(out)
    np.testing.assert_allclose(reread.affine_ras, ref_labels.affine_ras, atol=1e-6)
    np.testing.assert_array_equal(reread.data_zyx, ref_labels.data_zyx)


@needs_data
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p[0].split("/")[0])
def test_dicom_series_opens_like_nifti_and_labels_round_trip(tmp_path, pair):
    scan_nii, labels_nii = (_shared(p) for p in pair)
    scan_img = _small(sitk.ReadImage(str(scan_nii)))
    if scan_img.GetPixelID() not in (sitk.sitkInt16, sitk.sitkUInt16, sitk.sitkUInt8):
        scan_img = sitk.Cast(scan_img, sitk.sitkInt16)
    sitk.WriteImage(scan_img, str(tmp_path / "scan.nii.gz"))
    sitk.WriteImage(_small(sitk.ReadImage(str(labels_nii))), str(tmp_path / "labels.nii.gz"))
    ref_scan = load_nifti(tmp_path / "scan.nii.gz")
    ref_labels = load_nifti(tmp_path / "labels.nii.gz")
    folder = write_dicom_fixture(scan_img, tmp_path / "series")

    assert is_scan_path(folder) and callable(napari_get_reader(str(folder)))
    [(data, kwargs, kind)] = napari_get_reader(str(folder))(str(folder))
    assert kind == "image" and kwargs["name"] == "series"
    assert kwargs["metadata"]["dicom_tags"]["study_instance_uid"] == "1.2.826.0.1.3680043.2.1125.778"
    np.testing.assert_array_equal(data, ref_scan.data_zyx)  # same voxels at the same places
    np.testing.assert_allclose(display_affine(kwargs["metadata"]), display_affine(ref_scan), atol=1e-6)

    out = tmp_path / "labels_dicom"
    save_labels(ref_labels.data_zyx, out, kwargs["metadata"])
    assert len(list(out.glob("*.dcm"))) == kwargs["metadata"]["file_shape"][2]  # one per slice
    back = load_volume(out)
    np.testing.assert_array_equal(back.data_zyx, ref_labels.data_zyx)  # bit-exact
    np.testing.assert_allclose(back.affine_ras, kwargs["metadata"]["affine_ras"], atol=1e-6)
    tags = back.source_tags
    assert tags["study_instance_uid"] == "1.2.826.0.1.3680043.2.1125.778"  # joins the study
    assert tags["series_instance_uid"] != "1.2.826.0.1.3680043.2.1125.777"  # a new series


@needs_data
def test_nifti_scan_labels_saved_as_dicom_keep_world_positions(tmp_path):
    """A NIfTI grid whose k axis runs against the DICOM slice normal: same world voxels."""
    path = _shared("spinalcord_mri/t2/label.nii.gz")
    ref = load_nifti(path)
    save_labels(ref.data_zyx, tmp_path / "dcm", ref.layer_metadata())
    back = load_volume(tmp_path / "dcm")
    np.testing.assert_array_equal(back.data_zyx, ref.data_zyx)
    np.testing.assert_allclose(display_affine(back), display_affine(ref), atol=1e-6)


def _synthetic(tmp_path: Path, suffix: str) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 1000, size=(7, 9, 11)).astype(np.int16)  # (k, j, i)
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))  # rotated in plane
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    return path, arr


@pytest.mark.parametrize("suffix", FILE_FORMATS)
def test_synthetic_lps_geometry_becomes_the_ras_affine(tmp_path, suffix):
    path, arr = _synthetic(tmp_path, suffix)
    vol = load_volume(path)
    # voxel (i, j, k) -> LPS = origin + D @ diag(spacing) @ ijk; RAS flips x and y
    lps = np.array([[0.0, 0.8, 0.0, 10.0], [-0.7, 0.0, 0.0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    np.testing.assert_allclose(vol.affine_ras, np.diag([-1, -1, 1, 1]) @ lps, atol=1e-9)
    assert vol.file_shape == (11, 9, 7)
    ijk = np.array([[3, 4, 5]])
    from napari_medsam.io.nifti import file_ijk_to_zyx

    zyx = file_ijk_to_zyx(ijk, vol.layer_metadata())[0]
    assert vol.data_zyx[tuple(zyx)] == arr[5, 4, 3]
    assert vol.data_zyx.dtype == np.int16


def test_napari_writer_saves_nrrd_with_sidecars_and_reader_restores_them(tmp_path):
    path, _ = _synthetic(tmp_path, ".nrrd")
    [(data, kwargs, _)] = napari_get_reader(str(path))(str(path))
    labels = np.zeros(data.shape, np.uint8)
    labels[1:3, 2:5, 2:6] = 2
    labels[4:6, 1:3, 1:3] = 7
    from napari_medsam.session.labels import LAYER_METADATA_KEY, LabelInfo, LabelRegistry

    registry = LabelRegistry([LabelInfo(2, "liver", (10, 20, 30)), LabelInfo(7, "spleen", (200, 0, 5))])
    meta = {**kwargs["metadata"], LAYER_METADATA_KEY: registry.to_dict()}
    out = tmp_path / "seg.nrrd"
    write_labels(str(out), labels, {"name": "seg", "scale": kwargs["scale"], "metadata": meta})
    assert (tmp_path / "seg.labels.json").is_file() and (tmp_path / "seg.ctbl").is_file()
    [(back, back_kwargs, kind)] = napari_get_reader(str(out))(str(out))
    assert kind == "labels"
    np.testing.assert_array_equal(back, labels)
    colors = back_kwargs["colormap"]
    assert colors[2] == pytest.approx((10 / 255, 20 / 255, 30 / 255, 1.0))
    assert colors[7] == pytest.approx((200 / 255, 0.0, 5 / 255, 1.0))
    assert dict(zip(*back_kwargs["features"].values(), strict=True))[7] == "spleen"
    assert back_kwargs["metadata"][LAYER_METADATA_KEY]["labels"][0]["name"] == "liver"


def test_bad_inputs_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.nrrd"
    bad.write_bytes(b"NRRD0004\ntype: nonsense\n\n")
    with pytest.raises(NiftiError, match="bad.nrrd") as info:
        load_volume(bad)
    assert "\n" not in str(info.value)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert napari_get_reader(str(empty)) is None  # not a DICOM folder
    with pytest.raises(NiftiError, match="no DICOM series"):
        load_volume(empty)
    with pytest.raises(NiftiError, match="no such"):
        load_volume(tmp_path / "missing.mha")
    rgb = sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(NiftiError, match="components"):
        load_volume(tmp_path / "rgb.mha")
    two_d = sitk.GetImageFromArray(np.zeros((4, 5), np.uint8))
    sitk.WriteImage(two_d, str(tmp_path / "flat.mha"))
    with pytest.raises(NiftiError, match="2D"):
        load_volume(tmp_path / "flat.mha")


def test_output_paths_are_checked(tmp_path):
    path, _ = _synthetic(tmp_path, ".mha")
    vol = load_volume(path)
    labels = np.ones(vol.data_zyx.shape, np.uint8)
    with pytest.raises(NiftiError, match="no such folder"):
        save_labels(labels, tmp_path / "nowhere" / "x.nii.gz", vol.layer_metadata())
    assert not (tmp_path / "nowhere").exists()  # no folders made on the way
    with pytest.raises(NiftiError, match="saved as"):
        labels_format(tmp_path / "x.png")
    full = tmp_path / "taken"
    full.mkdir()
    (full / "other.dcm").write_bytes(b"x")
    with pytest.raises(NiftiError, match="already exists"):
        save_labels(labels, full, vol.layer_metadata())
    assert sorted(p.name for p in full.iterdir()) == ["other.dcm"]
    assert labels_format(tmp_path / "new_series") == "dicom"
    save_labels(labels, tmp_path / "new_series", vol.layer_metadata())
    np.testing.assert_array_equal(load_volume(tmp_path / "new_series").data_zyx, labels)
    shutil.rmtree(tmp_path / "new_series")
