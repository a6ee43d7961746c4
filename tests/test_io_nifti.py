"""NIfTI loading and label writing on synthetic files: orientation, dtypes, errors."""

from __future__ import annotations

import gzip
import itertools
import logging
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_medsam.io import nifti_save
from napari_medsam.io.nifti import (
    NiftiError,
    ObliqueAffineWarning,
    file_ijk_to_zyx,
    load_nifti,
    metadata_for_display_grid,
    save_labels_nifti,
    slice_axis_of_file,
    zyx_to_file_ijk,
)

FILE_SHAPE = (7, 9, 11)
SPACING = (1.5, 2.0, 3.0)  # of file axes i, j, k


def _signed_perm_affine(perm, signs, spacing=SPACING, origin=(10.0, -20.0, 30.0)):
    """Affine whose file axis i points along world (RAS) axis perm[i] with sign signs[i]."""
    affine = np.zeros((4, 4))
    for i in range(3):
        affine[perm[i], i] = signs[i] * spacing[i]
    affine[:3, 3] = origin
    affine[3, 3] = 1.0
    return affine


def _save(tmp_path: Path, data, affine, name="vol.nii.gz", **header_fields) -> Path:
    img = nib.Nifti1Image(data, affine)
    for key, value in header_fields.items():
        img.header[key] = value
    path = tmp_path / name
    nib.save(img, path)
    return path


SIGNED_PERMS = [
    (perm, signs)
    for perm in itertools.permutations(range(3))
    for signs in itertools.product((1, -1), repeat=3)
]


@pytest.mark.parametrize("perm,signs", SIGNED_PERMS, ids=lambda v: str(v))
def test_display_axes_are_superior_posterior_left(tmp_path, perm, signs):
    affine = _signed_perm_affine(perm, signs)
    inv = np.linalg.inv(affine)
    data = np.zeros(FILE_SHAPE, dtype=np.int16)
    center_ijk = np.array([3, 4, 5])
    center_ras = affine[:3, :3] @ center_ijk + affine[:3, 3]
    world_step = {perm[i]: SPACING[i] for i in range(3)}  # voxel size along each RAS axis
    markers = {
        1: center_ras,
        2: center_ras + [0, 0, world_step[2]],  # one voxel superior
        3: center_ras - [0, world_step[1], 0],  # one voxel posterior
        4: center_ras - [world_step[0], 0, 0],  # one voxel to the patient's left
    }
    for value, ras in markers.items():
        ijk = np.rint(inv[:3, :3] @ ras + inv[:3, 3]).astype(int)
        data[tuple(ijk)] = value

    vol = load_nifti(_save(tmp_path, data, affine))

    z0, y0, x0 = np.argwhere(vol.data_zyx == 1)[0]
    assert tuple(np.argwhere(vol.data_zyx == 2)[0]) == (z0 + 1, y0, x0)
    assert tuple(np.argwhere(vol.data_zyx == 3)[0]) == (z0, y0 + 1, x0)
    assert tuple(np.argwhere(vol.data_zyx == 4)[0]) == (z0, y0, x0 + 1)
    expected_spacing = (world_step[2], world_step[1], world_step[0])
    assert vol.spacing_zyx_mm == pytest.approx(expected_spacing)
    assert vol.data_zyx.shape == tuple(FILE_SHAPE[perm.index(w)] for w in (2, 1, 0))
    assert vol.data_zyx.flags.c_contiguous
    assert not vol.oblique

    meta = vol.layer_metadata()
    assert tuple(file_ijk_to_zyx(center_ijk, meta)) == (z0, y0, x0)
    assert slice_axis_of_file(meta) == perm.index(2)
    # Writing the display array back gives the file array bit for bit.
    out = save_labels_nifti(vol.data_zyx.astype(np.uint8), tmp_path / "back.nii", meta)
    back = nib.load(out)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)


def test_ijk_zyx_round_trip_on_all_voxels():
    meta = {"ornt": np.array([[1, -1], [2, 1], [0, -1]]), "file_shape": (4, 5, 6)}
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (4, 5, 6)], indexing="ij"), -1)
    zyx = file_ijk_to_zyx(ijk.reshape(-1, 3), meta)
    # A bijection onto the display grid (6, 4, 5).
    assert zyx.min(axis=0).tolist() == [0, 0, 0]
    assert zyx.max(axis=0).tolist() == [5, 3, 4]
    assert len({tuple(p) for p in zyx}) == 4 * 5 * 6
    np.testing.assert_array_equal(zyx_to_file_ijk(zyx, meta), ijk.reshape(-1, 3))
    # Known case: file axis 0 flips into display y, axis 2 flips into display z.
    assert file_ijk_to_zyx([0, 0, 0], meta).tolist() == [5, 3, 0]
    assert file_ijk_to_zyx([1.5, 2.0, 0.5], meta).tolist() == [4.5, 1.5, 2.0]
    assert slice_axis_of_file(meta) == 2


def test_ijk_mapping_needs_grid():
    with pytest.raises(ValueError, match="source grid"):
        file_ijk_to_zyx([0, 0, 0], {})


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float32, np.uint16])
def test_stored_dtype_is_kept(tmp_path, dtype):
    data = np.arange(np.prod(FILE_SHAPE)) % 100 - (50 if dtype in (np.int16, np.int32) else 0)
    data = data.reshape(FILE_SHAPE).astype(dtype)
    vol = load_nifti(_save(tmp_path, data, np.diag([-1.0, -1.0, 2.0, 1.0])))
    assert vol.data_zyx.dtype == dtype
    np.testing.assert_array_equal(vol.data_zyx, data.transpose(2, 1, 0))


def _save_scaled(tmp_path, raw, slope, inter):
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(slope, inter)
    path = tmp_path / "scaled.nii"
    # Write the raw integers as they are, with the scaling in the header.
    img.header.set_data_dtype(raw.dtype)
    with open(path, "wb") as f:
        img.header.write_to(f)
        f.write(b"\0" * (int(img.header.get_data_offset()) - f.tell()))
        f.write(raw.tobytes(order="F"))
    return path


def test_integer_scaling_keeps_integers(tmp_path):
    raw = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4) * 100
    vol = load_nifti(_save_scaled(tmp_path, raw, 1.0, -1024.0))
    assert vol.data_zyx.dtype == np.int16
    np.testing.assert_array_equal(
        vol.data_zyx, raw.astype(int).transpose(2, 1, 0)[:, ::-1, ::-1] - 1024
    )


def test_fractional_scaling_gives_float32(tmp_path, caplog):
    raw = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    with caplog.at_level(logging.INFO, logger="napari_medsam.io.nifti"):
        vol = load_nifti(_save_scaled(tmp_path, raw, 0.5, 10.0))
    assert vol.data_zyx.dtype == np.float32
    expected = raw.astype(np.float32).transpose(2, 1, 0)[:, ::-1, ::-1] * 0.5 + 10.0
    np.testing.assert_allclose(vol.data_zyx, expected)
    assert "float32" in caplog.text


def test_oblique_warns_and_keeps_affine(tmp_path):
    angle = np.deg2rad(12.0)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-2.0, -2.0, 3.0])
    affine[:3, 3] = [5, 6, 7]
    data = np.arange(np.prod(FILE_SHAPE), dtype=np.int16).reshape(FILE_SHAPE)
    path = _save(tmp_path, data, affine)
    with pytest.warns(ObliqueAffineWarning, match=path.name):
        vol = load_nifti(path)
    assert vol.oblique and vol.layer_metadata()["oblique"]
    np.testing.assert_allclose(vol.affine_ras, affine, atol=1e-6)
    assert vol.spacing_zyx_mm == pytest.approx((3.0, 2.0, 2.0))
    out = save_labels_nifti(
        (vol.data_zyx % 7).astype(np.uint8), tmp_path / "l.nii.gz", vol.layer_metadata()
    )
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data % 7)


def test_tiny_rotation_is_not_oblique(tmp_path):
    affine = np.eye(4)
    affine[0, 1] = 1e-5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vol = load_nifti(_save(tmp_path, np.zeros(FILE_SHAPE, np.uint8), affine))
    assert not vol.oblique


def test_singleton_trailing_dims_are_squeezed(tmp_path):
    data = np.arange(np.prod(FILE_SHAPE), dtype=np.int16).reshape(*FILE_SHAPE, 1)
    vol = load_nifti(_save(tmp_path, data, np.diag([-1.0, -1.0, 1.0, 1.0])))
    assert vol.file_shape == FILE_SHAPE
    np.testing.assert_array_equal(vol.data_zyx, data[..., 0].transpose(2, 1, 0))
    out = save_labels_nifti(
        np.zeros_like(vol.data_zyx, np.uint8), tmp_path / "l.nii", vol.layer_metadata()
    )
    assert nib.load(out).shape == FILE_SHAPE


@pytest.mark.parametrize(
    "shape,message",
    [((7, 9), "2D"), ((7, 9, 11, 3), "3 volumes"), ((4, 5, 6, 1, 2), "2 volumes")],
)
def test_not_3d_is_refused(tmp_path, shape, message):
    path = _save(tmp_path, np.zeros(shape, np.int16), np.eye(4))
    with pytest.raises(NiftiError, match=message):
        load_nifti(path)


def test_complex_is_refused(tmp_path):
    path = _save(tmp_path, np.zeros(FILE_SHAPE, np.complex64), np.eye(4))
    with pytest.raises(NiftiError, match="complex"):
        load_nifti(path)


def test_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(NiftiError, match="no such file"):
        load_nifti(tmp_path / "missing.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"this is not a nifti file at all" * 20)
    with pytest.raises(NiftiError, match="junk.nii.gz"):
        load_nifti(junk)
    junk_gz = tmp_path / "junk2.nii.gz"
    junk_gz.write_bytes(gzip.compress(b"\0" * 400))
    with pytest.raises(NiftiError):
        load_nifti(junk_gz)

    good = _save(tmp_path, np.ones((20, 20, 20), np.int16), np.eye(4), name="good.nii")
    cut = tmp_path / "cut.nii"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(NiftiError, match="truncated or corrupt"):
        load_nifti(cut)
    good_gz = _save(
        tmp_path,
        np.random.default_rng(0).integers(0, 1000, (20, 20, 20)).astype(np.int16),
        np.eye(4),
    )
    cut_gz = tmp_path / "cut.nii.gz"
    cut_gz.write_bytes(good_gz.read_bytes()[:3000])
    with pytest.raises(NiftiError, match="truncated or corrupt"):
        load_nifti(cut_gz)


def test_too_big_for_memory(tmp_path, monkeypatch):
    psutil = pytest.importorskip("psutil")

    class _Mem:
        available = 1000

    monkeypatch.setattr(psutil, "virtual_memory", lambda: _Mem())
    path = _save(tmp_path, np.zeros(FILE_SHAPE, np.int16), np.eye(4))
    with pytest.raises(NiftiError, match="memory"):
        load_nifti(path)
    assert load_nifti(path, check_memory=False).data_zyx.shape == FILE_SHAPE[::-1]


def test_nonfinite_kept_and_logged(tmp_path, caplog):
    data = np.zeros(FILE_SHAPE, np.float32)
    data[1, 2, 3] = np.nan
    data[2, 2, 2] = np.inf
    with caplog.at_level(logging.WARNING, logger="napari_medsam.io.nifti"):
        vol = load_nifti(_save(tmp_path, data, np.eye(4)))
    assert vol.has_nonfinite
    assert np.isnan(vol.data_zyx).sum() == 1 and np.isinf(vol.data_zyx).sum() == 1
    assert "NaN/inf" in caplog.text


def _raw_header(path: Path) -> nib.Nifti1Header:
    with nib.openers.ImageOpener(path) as f:
        return nib.Nifti1Header.from_fileobj(f)


def test_label_file_header_and_dtype(tmp_path):
    affine = _signed_perm_affine((0, 1, 2), (1, -1, 1))
    img = nib.Nifti1Image(np.zeros(FILE_SHAPE, np.int16), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=4)
    img.header.set_xyzt_units("mm", "sec")
    src = tmp_path / "src.nii.gz"
    nib.save(img, src)
    meta = load_nifti(src).layer_metadata()
    shape_zyx = (FILE_SHAPE[2], FILE_SHAPE[1], FILE_SHAPE[0])
    for max_label, dtype in ((255, np.uint8), (300, np.uint16), (70000, np.int32)):
        labels = np.zeros(shape_zyx, np.int64)
        labels[1, 2, 3] = max_label
        out = save_labels_nifti(labels, tmp_path / f"l{max_label}.nii.gz", meta)
        hdr = _raw_header(out)
        assert hdr.get_data_dtype() == dtype
        assert (hdr["scl_slope"], hdr["scl_inter"]) == (1.0, 0.0)
        assert (int(hdr["qform_code"]), int(hdr["sform_code"])) == (1, 4)
        assert hdr.get_xyzt_units() == ("mm", "sec")
        assert hdr.get_intent()[0] == "label"
        np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-6)
        assert np.asarray(nib.load(out).dataobj).max() == max_label


def test_label_save_refusals(tmp_path):
    meta = metadata_for_display_grid((4, 5, 6), (2.0, 1.0, 1.0))
    with pytest.raises(NiftiError, match="does not match"):
        save_labels_nifti(np.zeros((4, 6, 5), np.uint8), tmp_path / "a.nii.gz", meta)
    with pytest.raises(NiftiError, match=r"\.nii"):
        save_labels_nifti(np.zeros((4, 5, 6), np.uint8), tmp_path / "a.nrrd", meta)
    with pytest.raises(NiftiError, match="integers"):
        save_labels_nifti(np.zeros((4, 5, 6), np.float32), tmp_path / "a.nii", meta)
    with pytest.raises(NiftiError, match="source grid"):
        save_labels_nifti(np.zeros((4, 5, 6), np.uint8), tmp_path / "a.nii", {"scale": (1, 1, 1)})


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    meta = metadata_for_display_grid((4, 5, 6), (2.0, 1.0, 1.0))
    target = tmp_path / "labels.nii.gz"
    save_labels_nifti(np.ones((4, 5, 6), np.uint8), target, meta)
    good_bytes = target.read_bytes()

    def _broken_save(img, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nifti_save.nib, "save", _broken_save)
    with pytest.raises(NiftiError, match="disk full"):
        save_labels_nifti(np.full((4, 5, 6), 2, np.uint8), target, meta)
    assert target.read_bytes() == good_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.nii.gz"]


def test_display_grid_metadata_round_trip(tmp_path):
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[3, 0, 0] = 1  # superior, anterior, patient right corner
    meta = metadata_for_display_grid(labels.shape, (2.0, 1.5, 1.0), origin_ras=(1, 2, 3))
    out = save_labels_nifti(labels, tmp_path / "grid.nii", meta)
    vol = load_nifti(out)
    np.testing.assert_array_equal(vol.data_zyx, labels)
    assert vol.spacing_zyx_mm == pytest.approx((2.0, 1.5, 1.0))
    # Display voxel (0, 0, 0) sits at the given RAS origin.
    np.testing.assert_allclose(vol.affine_ras[:3, 3], [1, 2, 3])


def test_uncompressed_file_gives_private_writeable_memory(tmp_path):
    data = np.arange(np.prod(FILE_SHAPE), dtype=np.int16).reshape(FILE_SHAPE)
    path = _save(tmp_path, data, np.diag([-1.0, -1.0, 1.0, 1.0]), name="plain.nii")
    vol = load_nifti(path)
    assert type(vol.data_zyx) is np.ndarray and vol.data_zyx.flags.writeable
    vol.data_zyx[0, 0, 0] = 123  # painting must not touch the file
    assert np.asarray(nib.load(path).dataobj)[0, 0, 0] == 0


def test_nifti2_and_copied_metadata(tmp_path):
    import copy

    data = np.arange(np.prod(FILE_SHAPE), dtype=np.int16).reshape(FILE_SHAPE)
    path = tmp_path / "two.nii"
    nib.save(nib.Nifti2Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    vol = load_nifti(path)
    np.testing.assert_array_equal(vol.data_zyx, data.transpose(2, 1, 0)[:, ::-1, ::-1])
    meta = copy.deepcopy(vol.layer_metadata())  # napari may copy layer metadata
    out = save_labels_nifti((vol.data_zyx % 5).astype(np.uint8), tmp_path / "l.nii.gz", meta)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), data % 5)
