"""``napari-medsam eval --protocol 3d`` end to end on a tiny NIfTI pair with injected engines."""

from __future__ import annotations

import json
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from napari_medsam import cli
from napari_medsam._cli import _common
from oracle_engines import EmptyEngine, OracleEngine
from napari_medsam.io.nifti import load_nifti
from napari_medsam.prompts.geometry import RESIZE_STRETCH


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
        _common, "load_engine", lambda checkpoint, device, **_: OracleEngine(labels_zyx)
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

    monkeypatch.setattr(_common, "load_engine", lambda checkpoint, device, **_: EmptyEngine())
    argv = ["eval", str(scan), str(seg), "--protocol", "3d", "--labels", "3", "--max-clicks", "2"]
    assert cli.main(argv + ["--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["labels"]) == ["3"] and report["max_clicks"] == 2
    assert report["labels"]["3"]["dice_per_interaction"] == [0.0, 0.0, 0.0]


def test_eval_3d_flags_reach_the_report(nifti_pair, tmp_path, monkeypatch, capsys):
    scan, seg = nifti_pair
    labels_zyx = load_nifti(seg).data_zyx
    monkeypatch.setattr(
        _common, "load_engine", lambda checkpoint, device, **_: OracleEngine(labels_zyx)
    )
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    base = ["eval", str(scan), str(seg), "--protocol", "3d", "--device", "cpu"]
    argv = [*base, "--box-seed", "7", "--stop-score", "0.3", "--stop-overlap", "0.2",
            "--between", "keep", "--json", str(first)]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "slices after box + propagation" in out and "stopped above slice" in out
    report = json.loads(first.read_text())
    assert report["box"]["kind"] == "loose" and report["box"]["seed"] == 7
    assert report["policy"]["gaps"] == "keep"
    assert report["settings"]["propagation"]["stop_score"] == 0.3
    assert report["settings"]["propagation"]["stop_overlap"] == 0.2
    r = report["labels"]["1"]
    assert r["stops"][0]["direction"] == "up" and r["slices_reached"] == r["truth_slices"] == 5
    assert cli.main([*base, "--box", "tight", "--json", str(second), "--spacing-report", str(first)]) == 0
    out = capsys.readouterr().out
    assert json.loads(second.read_text())["box"] == {"kind": "tight"}
    assert "by slice thickness" in out and "2.5-5 mm" in out
    row = next(line for line in out.splitlines() if line.startswith("2.5-5 mm"))
    assert row.split()[2] == "4"  # 2 objects x 2 reports
    for bad in (["--stop-score", "2"], ["--stop-overlap", "x"], ["--between", "both"]):
        with pytest.raises(SystemExit):
            cli.main([*base, *bad])


def test_eval_3d_window_rule_and_mask_prompt_reach_the_model(nifti_pair, tmp_path, monkeypatch):
    """The per-object window (lung preset here: the objects sit in -900 HU) is what the
    engine sees unless --window is given; --mask-prompt reaches every propagation."""
    scan, seg = nifti_pair
    labels_zyx = load_nifti(seg).data_zyx
    seen = []

    class Spy(OracleEngine):
        lowres_side = 256  # a mask-input frame, so binary masks reach predict
        spec = SimpleNamespace(resize=RESIZE_STRETCH)

        def embed(self, image_yx, cache_key=None):
            seen.append((cache_key[2], cache_key[3]))

        def predict(self, image_yx, prompt, cache_key=None):
            seen.append(prompt.prev_logits_lowres is not None)
            return super().predict(image_yx, prompt, cache_key)

    monkeypatch.setattr(_common, "load_engine", lambda checkpoint, device, **_: Spy(labels_zyx))
    out = tmp_path / "r.json"
    base = ["eval", str(scan), str(seg), "--protocol", "3d", "--labels", "1", "--max-clicks", "0",
            "--json", str(out)]  # fmt: skip
    assert cli.main([*base, "--window-rule", "preset", "--mask-prompt", "binary"]) == 0
    report = json.loads(out.read_text())
    assert report["labels"]["1"]["window"] == [-1350.0, 150.0]
    assert report["settings"]["window"]["rule"] == "preset"
    assert report["settings"]["propagation"]["mask_prompt"] == "binary"
    assert {w for w in seen if isinstance(w, tuple)} == {(-1350.0, 150.0)}
    assert seen.count(True) >= 2 and seen[1] is False  # the box alone, then mask prompts
    seen.clear()
    assert cli.main([*base, "--window-rule", "preset", "--window", "40,400"]) == 0
    report = json.loads(out.read_text())
    assert report["labels"]["1"]["window"] == [-160.0, 240.0]  # the user's choice is kept
    assert report["settings"]["window"]["rule"] == "user"
    assert {w for w in seen if isinstance(w, tuple)} == {(-160.0, 240.0)}
    assert cli.main([*base, "--window-rule", "display"]) == 0
    assert json.loads(out.read_text())["labels"]["1"]["window"] == [-160.0, 240.0]
    with pytest.raises(SystemExit):
        cli.main([*base, "--window-rule", "lung"])
