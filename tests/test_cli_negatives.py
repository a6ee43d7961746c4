"""``napari-medsam segment --negatives-from``: objects of a label file become negative clicks."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from fakes import FakeEngine

from napari_medsam.cli import main
from napari_medsam.io.nifti import load_nifti
from napari_medsam.tasks.segment import SliceKey

AFFINE = np.diag([1.0, 1.0, 3.0, 1.0])  # file (i, j, k) with k the slice axis


class _KeyedFake(FakeEngine):
    """The fake engine, also for the prompt loop's plain ``int`` cache keys."""

    def predict(self, image_yx, prompt, cache_key=None):
        if isinstance(cache_key, int):
            cache_key = SliceKey("cli", cache_key, 0.0, 1.0)
        return super().predict(image_yx, prompt, cache_key)


def _files(tmp_path):
    """Scan, and a label file holding a neighbour (label 2) of the organ to segment (label 1)."""
    shape = (40, 36, 8)
    organ = np.zeros(shape, bool)
    organ[8:20, 10:26, 1:7] = True
    neighbour = np.zeros(shape, bool)
    neighbour[20:30, 10:26, 1:7] = True
    data = np.where(organ | neighbour, 60, -1000).astype(np.int16)
    scan = tmp_path / "scan.nii.gz"
    nib.Nifti1Image(data, AFFINE).to_filename(str(scan))
    others = tmp_path / "others.nii.gz"
    nib.Nifti1Image((2 * neighbour).astype(np.uint8), AFFINE).to_filename(str(others))
    truth = tmp_path / "truth.nii.gz"
    nib.Nifti1Image((organ + 2 * neighbour).astype(np.uint8), AFFINE).to_filename(str(truth))
    return scan, others, load_nifti(truth).data_zyx


def _run(tmp_path, monkeypatch, scan, truth, *extra):
    import napari_medsam.model.engine as engine_module

    engine = _KeyedFake(truth_zyx=truth)
    monkeypatch.setattr(engine_module, "load_engine", lambda *a, **k: engine)
    out = tmp_path / "out.nii.gz"
    # box over file rows 6..23 (reaching 4 rows into the neighbour) on slice k = 4
    argv = ["segment", str(scan), "--out", str(out), "--box", "6,8,23,27,4", *extra]
    return main(argv), engine, out


def test_negatives_from_a_label_file_reach_the_engine(tmp_path, monkeypatch, capsys):
    scan, others, truth = _files(tmp_path)
    code, engine, _ = _run(tmp_path, monkeypatch, scan, truth)
    assert code == 0, capsys.readouterr().err
    (plain,) = engine.prompts
    assert len(plain.points_yx) == 0
    code, engine, out = _run(
        tmp_path, monkeypatch, scan, truth, "--negatives-from", str(others), "--propagate"
    )
    assert code == 0, capsys.readouterr().err
    assert len(engine.predict_calls) > 3  # the prompted slice, then propagation
    for call in engine.predict_calls:
        z, prompt = call.cache_key.z, call.prompt
        if (truth[z] == 2).any():  # the neighbour is in the box: one click on it
            assert prompt.point_labels.tolist() == [0]
            assert truth[z][tuple(prompt.points_yx[0].astype(int))] == 2
        else:
            assert len(prompt.points_yx) == 0
    labels = np.asarray(nib.load(str(out)).dataobj)
    assert set(np.unique(labels)) == {0, 1}  # only the new object is written


def test_negatives_from_another_grid_is_a_clear_error(tmp_path, monkeypatch, capsys):
    scan, _, truth = _files(tmp_path)
    wrong = tmp_path / "wrong.nii.gz"
    nib.Nifti1Image(np.zeros((40, 36, 9), np.uint8), AFFINE).to_filename(str(wrong))
    code, _, out = _run(tmp_path, monkeypatch, scan, truth, "--negatives-from", str(wrong))
    assert code == 2 and "not on the scan's grid" in capsys.readouterr().err
    assert not out.exists()
