"""``napari-medsam segment``: file-frame coordinates, round trip on synthetic NIfTI files."""

import argparse

import nibabel as nib
import numpy as np
import pytest

from napari_medsam._cli.segment import slice_prompts
from napari_medsam.cli import main
from napari_medsam.io.nifti import load_nifti

# file axis 0 -> superior (3 mm), axis 1 -> patient right (x decreasing), axis 2 -> anterior
PERMUTED_AFFINE = np.array(
    [[0.0, -1.0, 0.0, 20.0], [0.0, 0.0, 1.0, -5.0], [3.0, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]]
)


def _write(path, data, affine):
    nib.Nifti1Image(data, affine).to_filename(str(path))
    return path


def _args(**kw):
    base = {"point": [], "neg_point": [], "box": []}
    base.update(kw)
    return argparse.Namespace(**base)


def test_prompts_follow_the_file_frame(tmp_path):
    # unique voxel values: the display voxel a prompt maps to must hold the value of the file voxel
    data = np.arange(6 * 50 * 40, dtype=np.int16).reshape(6, 50, 40)
    path = _write(tmp_path / "permuted.nii.gz", data, PERMUTED_AFFINE)
    volume = load_nifti(path)
    meta = volume.layer_metadata()
    prompts = slice_prompts(_args(point=[(4, 10, 33)], neg_point=[(4, 40, 2)]), meta)
    assert list(prompts) == [next(iter(prompts))]  # both clicks on one display slice
    (z, p), = prompts.items()  # fmt: skip
    (y, x), (y2, x2) = p["points_yx"]
    assert p["labels"] == [1, 0]
    assert volume.data_zyx[z, y, x] == data[4, 10, 33]
    assert volume.data_zyx[z, y2, x2] == data[4, 40, 2]
    # box: slice index along file axis 0 (the S-I axis), corners along file axes 1 and 2
    prompts = slice_prompts(_args(box=[(10, 5, 30, 25, 2)]), meta)
    (z, p), = prompts.items()  # fmt: skip
    y0, x0, y1, x1 = p["boxes_yxyx"][0]
    corners = {volume.data_zyx[z, y, x] for y in (y0, y1) for x in (x0, x1)}
    assert corners == {data[2, a, b] for a in (10, 30) for b in (5, 25)}


def test_click_outside_volume_is_a_clear_error(tmp_path, capsys):
    path = _write(tmp_path / "v.nii.gz", np.zeros((20, 20, 4), np.int16), np.diag([1.0, 1, 3, 1]))
    code = main(["segment", str(path), "--out", str(tmp_path / "o.nii.gz"), "--point", "5,25,1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "outside the volume" in err and "file axis 1" in err
    assert not (tmp_path / "o.nii.gz").exists()
    code = main(["segment", str(path), "--out", str(tmp_path / "o.nii.gz")])
    assert code == 2 and "--box or --point" in capsys.readouterr().err


def test_bad_box_syntax_is_rejected(tmp_path):
    with pytest.raises(SystemExit):
        main(["segment", "x.nii.gz", "--out", "y.nii.gz", "--box", "1,2,3"])


def _phantom_file(tmp_path):
    """A soft-tissue body with a bright off-centre organ, stored with PERMUTED_AFFINE."""
    shape = (6, 64, 48)  # file (i: S-I, j: R-L, k: P-A)
    a, b = np.mgrid[: shape[1], : shape[2]]
    body = ((a - 32) / 30) ** 2 + ((b - 24) / 22) ** 2 <= 1
    organ = ((a - 20) / 9) ** 2 + ((b - 30) / 12) ** 2 <= 1
    plane = np.where(body, 40, -1000) + np.where(organ, 110, 0)
    data = np.repeat(plane[None], shape[0], axis=0).astype(np.int16)
    data += np.random.default_rng(0).normal(0, 8, data.shape).astype(np.int16)
    truth = np.zeros(shape, bool)
    truth[3] = organ
    return _write(tmp_path / "phantom.nii.gz", data, PERMUTED_AFFINE), truth, organ


def test_box_round_trip_on_permuted_flipped_file(tmp_path, capsys):
    path, truth, organ = _phantom_file(tmp_path)
    aa, bb = np.nonzero(organ)
    box = f"{aa.min()},{bb.min()},{aa.max()},{bb.max()},3"
    out = tmp_path / "labels.nii.gz"
    code = main(["segment", str(path), "--out", str(out), "--box", box, "--label", "7",
                 "--device", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, PERMUTED_AFFINE)
    labels = np.asarray(img.dataobj)
    assert labels.shape == truth.shape
    assert set(np.unique(labels)) == {0, 7}
    mask = labels == 7
    assert not mask[[0, 1, 2, 4, 5]].any()  # only the prompted slice
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.8, dice  # a frame error (swap / flip) would put the mask elsewhere
    assert "slice" in capsys.readouterr().out
