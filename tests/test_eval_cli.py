"""``napari-medsam eval`` end to end on a tiny synthetic NIfTI pair with injected engines."""

import json
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_medsam import __version__, cli
from napari_medsam._cli import _common
from oracle_engines import EmptyEngine, OracleEngine
from napari_medsam.evaluation.report import SCHEMA
from napari_medsam.io.nifti import load_nifti


@pytest.fixture
def nifti_pair(tmp_path):
    """(x, y, z) = (20, 18, 5) CT-like scan and labels 1 and 3, 2 mm voxels, LPS-ish affine."""
    labels_xyz = np.zeros((20, 18, 5), np.uint8)
    labels_xyz[3:11, 4:12, 1:4] = 1
    labels_xyz[13:18, 2:9, 2:5] = 3
    image_xyz = np.where(labels_xyz > 0, 50, -900).astype(np.int16)
    affine = np.diag([-2.0, -2.0, 2.0, 1.0])
    scan = tmp_path / "scan.nii.gz"
    seg = tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(image_xyz, affine), scan)
    nib.save(nib.Nifti1Image(labels_xyz, affine), seg)
    (tmp_path / "classes.json").write_text(json.dumps({"1": "liver", "3": "kidney"}))
    return scan, seg


def inject(monkeypatch, factory):
    seen = {}

    def fake_load_engine(checkpoint, device, **_):
        seen["args"] = (checkpoint, device)
        return factory()

    monkeypatch.setattr(_common, "load_engine", fake_load_engine)
    return seen


def test_eval_cli_oracle_json_table_and_plot(nifti_pair, tmp_path, monkeypatch, capsys):
    scan, seg = nifti_pair
    labels_zyx = load_nifti(seg).data_zyx
    seen = inject(monkeypatch, lambda: OracleEngine(labels_zyx))
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    argv = ["eval", str(scan), str(seg), "--min-area", "20", "--max-clicks", "5"]
    argv += ["--device", "cpu", "--json", str(out_json), "--plot", str(out_png)]
    assert cli.main(argv) == 0
    assert seen["args"] == (None, "cpu")
    captured = capsys.readouterr()
    assert "auto window: CT soft tissue L/W 40/400" in captured.out
    assert "NoC@90" in captured.out and "liver" in captured.out and "overall" in captured.out
    assert "[eval]" in captured.err  # progress goes to stderr
    assert out_png.stat().st_size > 0

    report = json.loads(out_json.read_text())
    assert report["schema"] == SCHEMA
    assert report["napari_medsam_version"] == __version__
    settings = report["settings"]
    assert settings["prompt"] == "clicks" and settings["max_clicks"] == 5
    assert settings["min_area"] == 20 and settings["labels"] == [1, 3]
    assert settings["window"]["source"] == "auto" and settings["window"]["lo"] == -160.0
    assert settings["engine"] == "oracle" and settings["device"] == "cpu"
    assert set(report["per_label"]) == {"1", "3"}
    liver = report["per_label"]["1"]
    assert liver["name"] == "liver"
    expected_keys = {"n_cases", "noc85", "noc90", "n_fail90", "dice_at", "box_dice"}
    expected_keys |= {"miou_curve", "s_per_click", "s_per_embedding"}
    assert expected_keys <= set(liver)
    assert liver["n_cases"] == 3 and liver["noc90"] == 1.0 and len(liver["miou_curve"]) == 5
    assert report["overall"]["n_cases"] == len(report["cases"])
    case = report["cases"][0]
    assert {"label", "z", "area", "ious", "dices", "click_seconds"} <= set(case)


def test_eval_cli_box_with_user_window_and_empty_engine(nifti_pair, tmp_path, monkeypatch, capsys):
    scan, seg = nifti_pair
    inject(monkeypatch, EmptyEngine)
    out_json = tmp_path / "box.json"
    argv = ["eval", str(scan), str(seg), "--labels", "3", "--prompt", "box", "--min-area", "1"]
    argv += ["--window", "0,200", "--json", str(out_json)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "user window L/W 0/200 -> [-100, 100]" in out and "boxDice" in out
    report = json.loads(out_json.read_text())
    assert report["settings"]["window"]["source"] == "user"
    kidney = report["per_label"]["3"]
    assert kidney["box_dice"] == 0.0 and kidney["noc90"] is None


def test_eval_cli_clicks_cap_with_empty_engine(nifti_pair, tmp_path, monkeypatch, capsys):
    scan, seg = nifti_pair
    inject(monkeypatch, EmptyEngine)
    out_json = tmp_path / "cap.json"
    argv = [
        "eval",
        str(scan),
        str(seg),
        "--labels",
        "1",
        "--max-clicks",
        "4",
        "--min-area",
        "20",
        "--json",
        str(out_json),
    ]
    assert cli.main(argv) == 0
    s = json.loads(out_json.read_text())["per_label"]["1"]
    assert s["noc85"] == 4 and s["noc90"] == 4 and s["n_fail90"] == s["n_cases"]


def test_eval_cli_user_errors(nifti_pair, monkeypatch, capsys):
    scan, seg = nifti_pair
    inject(monkeypatch, EmptyEngine)
    assert cli.main(["eval", str(scan), str(seg), "--labels", "9"]) == 2
    assert "not present" in capsys.readouterr().err
    assert cli.main(["eval", str(scan), str(seg), "--window", "40"]) == 2
    assert "LEVEL,WIDTH" in capsys.readouterr().err
    assert cli.main(["eval", str(scan), str(seg), "--min-area", "10000"]) == 2
    assert "no object slice" in capsys.readouterr().err


def test_eval_cli_plot_without_matplotlib(nifti_pair, tmp_path, monkeypatch, capsys):
    scan, seg = nifti_pair
    inject(monkeypatch, EmptyEngine)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    argv = ["eval", str(scan), str(seg), "--max-clicks", "1", "--plot", str(tmp_path / "p.png")]
    assert cli.main(argv) == 1
    captured = capsys.readouterr()
    assert "pip install" in captured.err
    assert "[eval]" not in captured.err  # refused before running the evaluation


def test_eval_cli_slices_restricts_cases(nifti_pair, tmp_path, monkeypatch, capsys):
    scan, seg = nifti_pair
    labels_zyx = load_nifti(seg).data_zyx
    inject(monkeypatch, lambda: OracleEngine(labels_zyx))
    out_json = tmp_path / "slab.json"
    argv = ["eval", str(scan), str(seg), "--min-area", "20", "--slices", "2:3"]
    assert cli.main(argv + ["--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert {c["z"] for c in report["cases"]} == {2}
    assert report["settings"]["slices"] == "2:3"
    assert cli.main(["eval", str(scan), str(seg), "--slices", "2-3"]) == 2
    assert "START:STOP" in capsys.readouterr().err
