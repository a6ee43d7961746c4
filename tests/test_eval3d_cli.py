"""``napari-medsam eval --protocol 3d`` end to end on a tiny NIfTI pair with injected engines."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_medsam import cli
from napari_medsam._cli import eval as eval_cli
from napari_medsam.evaluation.fakes import EmptyEngine, OracleEngine
from napari_medsam.io.nifti import load_nifti


@pytest.fixture
def nifti_pair(tmp_path):
    labels_xyz = np.zeros((20, 18, 8), np.uint8)
    labels_xyz[3:11, 4:12, 1:6] = 1
    labels_xyz[13:18, 2:9, 2:7] = 3
    image_xyz = np.where(labels_xyz > 0, 50, -900).astype(np.int16)
    affine = np.diag([-2.0, -2.0, 3.0, 1.0])
    scan, seg = tmp_path / "scan.nii.gz", tmp_path / "seg.nii.gz"
    nib.save(nib.Nifti1Image(image_xyz, affine), scan)
    nib.save(nib.Nifti1Image(labels_xyz, affine), seg)
    (tmp_path / "classes.json").write_text(json.dumps({"1": "liver", "3": "kidney"}))
    return scan, seg


def test_eval_protocol_3d_oracle_and_empty(nifti_pair, tmp_path, monkeypatch, capsys):
    scan, seg = nifti_pair
    labels_zyx = load_nifti(seg).data_zyx
    monkeypatch.setattr(
        eval_cli, "_load_engine", lambda checkpoint, device, **_: OracleEngine(labels_zyx)
    )
    out = tmp_path / "r.json"
    argv = ["eval", str(scan), str(seg), "--protocol", "3d", "--device", "cpu", "--json", str(out)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "liver" in captured.out and "kidney" in captured.out and "AUC" in captured.out
    report = json.loads(out.read_text())
    assert report["protocol"] == "3d" and report["max_clicks"] == 5
    assert set(report["labels"]) == {"1", "3"}
    assert all(r["final_dice"] == 1.0 and r["dsc_auc"] == 1.0 for r in report["labels"].values())
    assert report["settings"]["spacing_zyx_mm"] == [3.0, 2.0, 2.0]
    assert "stop_score" in report["settings"]["propagation"]

    monkeypatch.setattr(eval_cli, "_load_engine", lambda checkpoint, device, **_: EmptyEngine())
    argv = ["eval", str(scan), str(seg), "--protocol", "3d", "--labels", "3", "--max-clicks", "2"]
    assert cli.main(argv + ["--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["labels"]) == ["3"] and report["max_clicks"] == 2
    assert report["labels"]["3"]["dice_per_interaction"] == [0.0, 0.0, 0.0]
