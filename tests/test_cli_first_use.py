"""Issue 14's command-line items: display-frame prompts, plain --help, bad --out folders,
the real device in eval's report, bench --quick, other scan formats."""

from __future__ import annotations

import argparse

import nibabel as nib
import numpy as np
import pytest

from napari_medsam._cli.segment_prompts import slice_prompts
from napari_medsam.cli import build_parser, main
from oracle_engines import OracleEngine
from napari_medsam.io.nifti import load_nifti
from napari_medsam.io.volumes import load_volume

PERMUTED_AFFINE = np.array(
    [[0.0, -1.0, 0.0, 20.0], [0.0, 0.0, 1.0, -5.0], [3.0, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]]
)


def _args(**kw):
    base = {"point": [], "neg_point": [], "box": [], "box_zyx": [], "point_zyx": []}
    base["neg_point_zyx"] = []
    base.update(kw)
    return argparse.Namespace(**base)


def _scan(tmp_path, name="scan.nii.gz"):
    data = np.arange(6 * 50 * 40, dtype=np.int16).reshape(6, 50, 40)
    path = tmp_path / name
    nib.Nifti1Image(data, PERMUTED_AFFINE).to_filename(str(path))
    return path, data


def test_display_frame_prompts_equal_their_file_frame_twins(tmp_path):
    path, _ = _scan(tmp_path)
    meta = load_nifti(path).layer_metadata()
    from napari_medsam.io.orientation import file_ijk_to_zyx

    file_frame = slice_prompts(_args(box=[(10, 5, 30, 25, 2)], point=[(2, 12, 7)]), meta)
    (z, p), = file_frame.items()  # fmt: skip
    y0, x0, y1, x1 = p["boxes_yxyx"][0]
    zc, yc, xc = (int(v) for v in file_ijk_to_zyx(np.array([2, 12, 7]), meta))
    display = slice_prompts(
        _args(box_zyx=[(z, y0, x0, y1, x1)], point_zyx=[(zc, yc, xc)]), meta
    )
    assert display == file_frame


def test_display_prompt_outside_is_one_clear_error(tmp_path, capsys):
    path, _ = _scan(tmp_path)
    out = tmp_path / "o.nii.gz"
    assert main(["segment", str(path), "--out", str(out), "--point-zyx", "99,1,1"]) == 2
    err = capsys.readouterr().err
    assert "outside the volume" in err and "display axis 0" in err and "\n" == err[-1]
    assert err.count("\n") == 1 and not out.exists()


def test_segment_help_has_no_raw_markup(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["segment", "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and ":func:" not in text
    assert "--box-zyx" in text and "img.dataobj[i, j, k]" in text


def test_out_into_a_missing_folder_is_refused_before_inference(tmp_path, capsys, monkeypatch):
    path, _ = _scan(tmp_path)
    monkeypatch.setattr(
        "napari_medsam.model.engine.load_engine", lambda *a, **k: pytest.fail("no inference")
    )
    out = tmp_path / "nonexistent" / "dir" / "x.nii.gz"
    assert main(["segment", str(path), "--out", str(out), "--box", "10,5,30,25,2"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "nonexistent").exists()  # no folders were made


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_segment_reads_and_writes_other_formats(tmp_path, capsys, monkeypatch, suffix):
    sitk = pytest.importorskip("SimpleITK")
    path, _ = _scan(tmp_path)
    volume = load_nifti(path)
    img = sitk.ReadImage(str(path))
    scan = tmp_path / f"scan{suffix}"
    sitk.WriteImage(img, str(scan))
    monkeypatch.setattr("napari_medsam.model.engine.load_engine", lambda *a, **k: _BoxEngine())
    out = tmp_path / f"seg{suffix}"
    assert main(["segment", str(scan), "--out", str(out), "--box", "10,5,30,25,2"]) == 0
    back = load_volume(out)
    np.testing.assert_allclose(back.affine_ras, volume.affine_ras, atol=1e-6)
    expected = np.zeros(volume.file_shape, np.uint8)
    expected[2, 10:31, 5:26] = 1  # --box i0,j0,i1,j1,k: file axes 1 and 2 on slice 2 of axis 0
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(out))).transpose(2, 1, 0)
    np.testing.assert_array_equal(got, expected)
    assert f"wrote {out}" in capsys.readouterr().out


def test_eval_names_the_device_used(tmp_path, capsys, monkeypatch):
    path, data = _scan(tmp_path)
    labels = np.zeros(data.shape, np.uint8)
    labels[2:4, 10:30, 5:25] = 1
    nib.Nifti1Image(labels, PERMUTED_AFFINE).to_filename(str(tmp_path / "labels.nii.gz"))
    engine = OracleEngine(load_nifti(tmp_path / "labels.nii.gz").data_zyx)
    engine.device = "cpu"
    monkeypatch.setattr("napari_medsam._cli._common.load_engine", lambda *a, **k: engine)
    code = main(["eval", str(path), str(tmp_path / "labels.nii.gz"), "--prompt", "box"])
    assert code == 0
    out = capsys.readouterr().out
    assert "on cpu" in out and "on auto" not in out


def test_bench_quick_is_small_and_says_so(monkeypatch, capsys):
    from napari_medsam._cli import bench

    seen = {}

    def fake_engine_benchmarks(engine, phantom, window, repeats, batch):
        seen.update(slices=phantom.image_zyx.shape[0], repeats=repeats)
        return {"quick_check": None}

    monkeypatch.setattr(bench, "_load_engine", lambda *a, **k: OracleEngine(np.zeros((1, 1, 1))))
    monkeypatch.setattr(bench, "engine_benchmarks", fake_engine_benchmarks)
    monkeypatch.setattr(bench, "_test_volume", lambda slices=24: (_Tiny(slices), _Window()))
    monkeypatch.setattr("napari_medsam.evaluation.benchmark.peak_memory", lambda e: {})
    fast = ["--no-gui", "--no-propagation", "--many-clicks", "0"]
    assert main(["bench", "--quick", *fast]) == 0
    assert seen == {"slices": 8, "repeats": 1}
    assert "several minutes" not in capsys.readouterr().err
    assert main(["bench", *fast, "--repeats", "2"]) == 0
    assert seen == {"slices": 24, "repeats": 2}
    assert "several minutes" in capsys.readouterr().err


class _BoxEngine:
    """Answers every prompt with its box (enough to follow the voxels through the formats)."""

    name, image_size = "box", 256

    def embed(self, image_yx, cache_key=None):
        pass

    def predict(self, image_yx, prompt, cache_key=None):
        from napari_medsam.types import SlicePrediction

        mask = np.zeros(image_yx.shape, bool)
        y0, x0, y1, x1 = (int(v) for v in prompt.box_yxyx)
        mask[y0 : y1 + 1, x0 : x1 + 1] = True
        return SlicePrediction(mask, np.zeros((256, 256), np.float32), 1.0)


class _Tiny:
    def __init__(self, slices):
        self.image_zyx = np.zeros((slices, 4, 4), np.int16)


class _Window:
    lo, hi = -160.0, 240.0
