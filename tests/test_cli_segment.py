"""``napari-medsam segment``: file-frame coordinates, round trip on synthetic NIfTI files."""

import argparse
import dataclasses

import nibabel as nib
import numpy as np
import pytest

from napari_medsam._cli.segment_prompts import slice_prompts
from napari_medsam.cli import main
from oracle_engines import OracleEngine
from napari_medsam.io.nifti import load_nifti
from napari_medsam.io.orientation import file_ijk_to_zyx

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
    assert code == 2 and "--box, --point" in capsys.readouterr().err


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


class _SliceOracle(OracleEngine):
    """The truth on the slice the cache key names (a SliceKey, from the prompt loop and
    from propagation alike); records the slices it predicted."""

    def __init__(self, labels_zyx, score=0.9):
        super().__init__(labels_zyx)
        self.score = score
        self.predicted_zs: list[int] = []

    def _mask(self, image_yx, prompt, cache_key):
        z = cache_key if isinstance(cache_key, int) else cache_key.z
        self.predicted_zs.append(z)
        return super()._mask(image_yx, prompt, (None, z))

    def predict(self, image_yx, prompt, cache_key=None):
        return dataclasses.replace(super().predict(image_yx, prompt, cache_key), score=self.score)


def _organ_file(tmp_path, n=12, organ_slices=range(1, 11)):
    """A body with an organ on ``organ_slices`` (file axis 0), stored with PERMUTED_AFFINE;
    returns the scan, the truth as a NIfTI and the truth in the display frame."""
    shape = (n, 40, 36)
    _, a, b = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((a - 20) / 18) ** 2 + ((b - 18) / 16) ** 2 <= 1
    organ = ((a - 15) / 6) ** 2 + ((b - 20) / 7) ** 2 <= 1
    organ[[i for i in range(n) if i not in organ_slices]] = False
    data = (np.where(body, 40, -1000) + np.where(organ, 110, 0)).astype(np.int16)
    scan = _write(tmp_path / "organ.nii.gz", data, PERMUTED_AFFINE)
    truth = _write(tmp_path / "truth.nii.gz", organ.astype(np.uint8), PERMUTED_AFFINE)
    return scan, organ, load_nifti(truth).data_zyx.astype(bool)


def _organ_box(organ, i):
    aa, bb = np.nonzero(organ[i])
    return f"{aa.min()},{bb.min()},{aa.max()},{bb.max()},{i}"


def test_propagate_fills_the_object_from_two_prompted_slices(tmp_path, monkeypatch, capsys):
    import napari_medsam.model.engine as engine_module

    scan, organ, truth_zyx = _organ_file(tmp_path)
    engine = _SliceOracle(truth_zyx)
    monkeypatch.setattr(engine_module, "load_engine", lambda *a, **k: engine)
    out = tmp_path / "labels.nii.gz"
    argv = ["segment", str(scan), "--out", str(out), "--label", "3"]
    argv += ["--box", _organ_box(organ, 3), "--box", _organ_box(organ, 8), "--propagate"]
    assert main(argv) == 0, capsys.readouterr().err
    labels = np.asarray(nib.load(str(out)).dataobj)
    np.testing.assert_array_equal(labels, np.where(organ, 3, 0))  # every organ slice, file grid
    seeds = set(engine.predicted_zs[:2])  # the prompt loop runs first
    assert len(seeds) == 2
    propagated = engine.predicted_zs[2:]
    assert seeds.isdisjoint(propagated)  # prompted slices are locked: never re-segmented
    assert {0, 11} <= set(propagated)  # tried past both ends of the organ, which stopped it
    assert "propagated to 8 more slices" in capsys.readouterr().out


def test_propagate_keeps_the_prompted_slice_and_honours_stop_score(tmp_path, monkeypatch, capsys):
    import napari_medsam.model.engine as engine_module

    scan, organ, truth_zyx = _organ_file(tmp_path)
    i_prompt = 5  # file index along the S-I axis
    z_prompt = int(
        file_ijk_to_zyx(np.array([i_prompt, 0, 0]), load_nifti(scan).layer_metadata())[0]
    )
    hand = truth_zyx.copy()
    rows = np.flatnonzero(hand[z_prompt].any(axis=1))
    hand[z_prompt, : rows[len(rows) // 3]] = False  # the model's answer on the prompted slice:
    assert hand[z_prompt].any()  # a notched organ that re-segmenting would fill back in
    # (a third cut off: its neighbours still overlap it above the default stop_overlap)
    engine = _SliceOracle(truth_zyx)
    engine._mask = lambda image, prompt, key: (  # noqa: E731
        hand[key.z] if key.z == z_prompt else truth_zyx[key.z]  # propagation never predicts it
    )
    monkeypatch.setattr(engine_module, "load_engine", lambda *a, **k: engine)
    out = tmp_path / "labels.nii.gz"
    argv = ["segment", str(scan), "--out", str(out), "--box", _organ_box(organ, i_prompt)]
    assert main([*argv, "--propagate"]) == 0, capsys.readouterr().err
    labels = load_nifti(out).data_zyx > 0
    assert labels.any(axis=(1, 2)).sum() > 5  # slices beyond the prompted one
    np.testing.assert_array_equal(labels[z_prompt], hand[z_prompt])  # kept as prompted
    engine.score = 0.5  # below the default stop score: propagation stops at once
    assert main([*argv, "--propagate"]) == 0
    assert load_nifti(out).data_zyx.any(axis=(1, 2)).sum() == 1
    assert main([*argv, "--propagate", "--stop-score", "0.4"]) == 0
    assert load_nifti(out).data_zyx.any(axis=(1, 2)).sum() > 5
    with pytest.raises(SystemExit):
        main([*argv, "--propagate", "--stop-score", "1.5"])


class _SlabOracle(_SliceOracle):
    """An SD-Trans-like engine: slabs of up to 4 slices through ``predict_stack``."""

    slab_depth = 4

    def __init__(self, labels_zyx):
        super().__init__(labels_zyx)
        self.slabs: list[int] = []

    def predict_stack(self, images_yx, prompts, cache_key=None):
        first = cache_key[1].z
        self.slabs.append(len(images_yx))
        return [
            self.predict(image, prompt, first + k)
            for k, (image, prompt) in enumerate(zip(images_yx, prompts, strict=True))
        ]


def test_propagate_uses_slabs_with_an_sd_trans_engine(tmp_path, monkeypatch, capsys):
    import napari_medsam.model.engine as engine_module

    scan, organ, truth_zyx = _organ_file(tmp_path)
    engine = _SlabOracle(truth_zyx)
    monkeypatch.setattr(engine_module, "load_engine", lambda *a, **k: engine)
    out = tmp_path / "labels.nii.gz"
    argv = ["segment", str(scan), "--out", str(out), "--box", _organ_box(organ, 5), "--propagate"]
    assert main([*argv, "--slab-depth", "2"]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), organ)
    assert engine.slabs and max(engine.slabs) == 2
    engine.slabs.clear()
    assert main(argv) == 0
    assert max(engine.slabs) == 4  # the engine's own depth by default
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), organ)


@pytest.mark.slow
def test_propagate_with_litemedsam_on_a_phantom(tmp_path, capsys):
    shape = (6, 64, 48)  # file (i: S-I, j: R-L, k: P-A); an organ tapering over i = 1..4
    i, a, b = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((a - 32) / 30) ** 2 + ((b - 24) / 22) ** 2 <= 1
    scale = np.where((i >= 1) & (i <= 4), 1.0 - 0.12 * np.abs(i - 2.5), 0.0)
    organ = ((a - 22) / 10) ** 2 + ((b - 28) / 12) ** 2 <= scale**2
    data = (np.where(body, 40, -1000) + np.where(organ, 110, 0)).astype(np.int16)
    data += np.random.default_rng(0).normal(0, 8, data.shape).astype(np.int16)
    path = _write(tmp_path / "phantom.nii.gz", data, PERMUTED_AFFINE)
    out = tmp_path / "labels.nii.gz"
    argv = ["segment", str(path), "--out", str(out), "--box", _organ_box(organ, 2)]
    assert main([*argv, "--device", "cpu", "--propagate"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    mask = np.asarray(nib.load(str(out)).dataobj) > 0
    assert mask[[1, 3, 4]].all(axis=0).any()  # slices on both sides of the prompted one
    # the prompted slice is kept as segmented (its count is printed before propagation)
    z = int(file_ijk_to_zyx(np.array([2, 0, 0]), load_nifti(path).layer_metadata())[0])
    assert f"slice {z}: {int(mask[2].sum())} voxels" in printed
    dice = 2 * (mask & organ).sum() / (mask.sum() + organ.sum())
    assert dice > 0.8, dice


def test_propagate_flags_between_overlap_and_the_stop_reasons(tmp_path, monkeypatch, capsys):
    import napari_medsam.model.engine as engine_module

    scan, organ, truth_zyx = _organ_file(tmp_path)
    engine = _SliceOracle(truth_zyx)
    monkeypatch.setattr(engine_module, "load_engine", lambda *a, **k: engine)
    out = tmp_path / "labels.nii.gz"
    argv = ["segment", str(scan), "--out", str(out), "--box", _organ_box(organ, 2),
            "--box", _organ_box(organ, 8), "--propagate"]  # fmt: skip
    # keep: the slices between the two boxes stay empty, the outer ends are propagated
    assert main([*argv, "--between", "keep"]) == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    painted = np.nonzero(np.asarray(nib.load(str(out)).dataobj).any(axis=(1, 2)))[0].tolist()
    assert painted == [1, 2, 8, 9, 10]
    assert "stopped above slice 11: area 0 px < 5 px" in text
    assert "stopped below slice 0: area 0 px < 5 px" in text
    # fill (the default): every organ slice; the filled ones come from the model's refinement
    engine.predicted_zs.clear()
    assert main(argv) == 0
    labels = np.asarray(nib.load(str(out)).dataobj)
    np.testing.assert_array_equal(labels > 0, organ)
    assert {3, 4, 5, 6, 7} <= set(engine.predicted_zs)
    # a score floor above the engine's 0.9 stops both outer directions at once
    capsys.readouterr()
    assert main([*argv, "--stop-score", "0.95", "--stop-overlap", "0", "--between", "keep"]) == 0
    assert "score 0.90 < 0.95" in capsys.readouterr().out
    painted = np.nonzero(np.asarray(nib.load(str(out)).dataobj).any(axis=(1, 2)))[0].tolist()
    assert painted == [2, 8]
    for bad in (["--stop-overlap", "1.5"], ["--between", "all"], ["--mask-prompt", "dense"]):
        with pytest.raises(SystemExit):
            main([*argv, *bad])
