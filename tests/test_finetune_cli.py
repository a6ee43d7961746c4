"""``napari-medsam finetune`` end to end on tiny synthetic NIfTI files."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from training_fixtures import one_thread  # noqa: F401

from napari_medsam.cli import main
from napari_medsam.io.phantom import make_phantom
from napari_medsam.model.engine import load_engine
from napari_medsam.model.medsa.build import build_medsa
from napari_medsam.model.medsa.checkpoint import backbone_part
from napari_medsam.model.medsa.engine import MedSAEngine


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune_cli")
    ph = make_phantom((8, 48, 48), (4.0, 1.0, 1.0), seed=3)
    # display (z, y, x) -> file (i, j, k) = (x, y, z) with an LPS-flipped diagonal affine
    affine = np.diag([-1.0, -1.0, 4.0, 1.0])
    scan = root / "scan.nii.gz"
    labels = root / "labels.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(ph.image_zyx, (2, 1, 0))[::-1, ::-1], affine), scan)
    nib.save(nib.Nifti1Image(np.transpose(ph.labels_zyx, (2, 1, 0))[::-1, ::-1], affine), labels)
    torch.manual_seed(0)
    backbone = root / "tiny.pt"
    torch.save(backbone_part(build_medsa("tiny_sam")), backbone)
    return scan, labels, backbone, root


def test_finetune_cli_trains_writes_a_loadable_checkpoint_and_resumes(files, capsys):
    scan, labels, backbone, root = files
    out = root / "medsa.pt"

    def argv(steps, *extra):
        return [
            "finetune",
            "--data",
            f"{scan}:{labels}",
            "--backbone",
            "tiny_sam",
            "--backbone-checkpoint",
            str(backbone),
            "--out",
            str(out),
            "--steps",
            str(steps),
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--min-area",
            "20",
            "--labels",
            "1,2,6",
            "--val-fraction",
            "0.34",
            "--val-cases",
            "2",
            "--val-max-clicks",
            "2",
            "--no-progress",
            *extra,
        ]

    assert main(argv(3)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["val_last"]["n_cases"] == 2
    assert summary["val_before"]["noc90"] == 2.0  # a fresh model cannot reach 0.9 in 2 clicks
    assert out.is_file() and (root / "medsa.pt.state.pt").is_file()
    history = json.loads((root / "medsa.pt.history.json").read_text())
    assert len(history["loss"]) == 3 and history["heldout_objects"]
    engine = load_engine(out, device="cpu")  # the app's loader takes the result
    assert isinstance(engine, MedSAEngine) and engine.clicks_change_embedding

    assert main(argv(5, "--resume")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 5
    history = json.loads((root / "medsa.pt.history.json").read_text())
    assert len(history["loss"]) == 5


def test_finetune_cli_rejects_bad_data_argument(files, capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--data", "no-colon.nii.gz", "--out", "x.pt"])
    assert "SCAN.nii.gz:LABELS.nii.gz" in capsys.readouterr().err


def test_finetune_cli_reports_missing_files(files, tmp_path, capsys):
    code = main(
        [
            "finetune",
            "--data",
            f"{tmp_path}/a.nii.gz:{tmp_path}/b.nii.gz",
            "--out",
            str(tmp_path / "o.pt"),
            "--backbone",
            "tiny_sam",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_finetune_cli_parts_decoder_trains_only_the_decoder(files, capsys):
    scan, labels, backbone, root = files
    out = root / "decoder.pt"
    code = main(
        [
            "finetune",
            "--data",
            f"{scan}:{labels}",
            "--backbone",
            "tiny_sam",
            "--backbone-checkpoint",
            str(backbone),
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--min-area",
            "20",
            "--val-fraction",
            "0",
            "--parts",
            "decoder",
            "--no-progress",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parts"] == "decoder" and summary["steps"] == 2
    history = json.loads((root / "decoder.pt.history.json").read_text())
    assert history["n_embedded_slices"] == history["n_train_slices"] > 0
    engine = load_engine(out, device="cpu")
    assert isinstance(engine, MedSAEngine) and not engine.clicks_change_embedding
