"""Projection 2.5D U-Net: geometry, shapes, checkpoints, training, the CLI and its bad inputs."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_medsam.cli import main
from napari_medsam.model.checkpoints import CheckpointError
from napari_medsam.model.mipunet.checkpoint import load_auto_model, save_auto_model
from napari_medsam.model.mipunet.geometry import (
    backproject,
    default_angles,
    detector_column,
    detector_size,
    mip,
)
from napari_medsam.model.mipunet.grid import network_grid, to_network_grid, to_scan_grid
from napari_medsam.model.mipunet.inference import segment_volume
from napari_medsam.model.mipunet.network import MipUNet, MipUNetConfig
from napari_medsam.model.mipunet.slice_net import SliceUNet, SliceUNetConfig
from napari_medsam.model.mipunet.unet2d import UNet2D, UNetConfig
from napari_medsam.training.mipunet.data import VOLUMES, volumes
from napari_medsam.training.mipunet.evaluate import dice
from napari_medsam.training.mipunet.sampler import CropSampler
from napari_medsam.training.mipunet.trainer import TrainSettings, train_model
from tests.mipunet_fixtures import fake_data_root, grid_volume, synthetic_ct, write_nifti

TINY = MipUNetConfig(n_views=6, features=2, base=4, levels=2, spacing_mm=3.0)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- geometry -----------------------------------------------------------------------


def test_projection_of_a_voxel_lands_on_its_detector_column_and_back_projects_onto_it():
    d, h, w = 3, 21, 30
    volume = torch.zeros(1, d, h, w)
    volume[0, 1, 5, 22] = 1.0
    angles = default_angles(8)
    views = mip(volume, angles)
    assert views.shape == (1, 8, d, detector_size(h, w))
    for i, angle in enumerate(angles.tolist()):
        col = float(detector_column(torch.tensor(5.0), torch.tensor(22.0), angle, h, w))
        assert abs(int(views[0, i, 1].argmax()) - col) <= 1.0
        assert float(views[0, i, 0].max()) == 0.0  # other slices see nothing
    back = backproject(views[:, :, None], angles, h, w)
    assert back.shape == (1, 1, d, h, w)
    assert np.unravel_index(int(back.argmax()), back.shape)[2:] == (1, 5, 22)


def test_every_voxel_projects_inside_the_detector_at_every_angle():
    h, w = 17, 40
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    s = detector_size(h, w)
    for angle in torch.linspace(0, math.pi, 13).tolist():
        col = detector_column(yy, xx, angle, h, w)
        assert float(col.min()) >= 0.0 and float(col.max()) <= s - 1


def test_back_projection_of_a_constant_view_is_constant_and_differentiable():
    views = torch.full((1, 4, 2, 5, detector_size(9, 11)), 0.7, requires_grad=True)
    back = backproject(views, default_angles(4), 9, 11)
    assert torch.allclose(back, torch.full_like(back, 0.7))
    back.sum().backward()
    assert views.grad is not None and float(views.grad.abs().sum()) > 0


def test_network_grid_round_trip_keeps_a_mask_in_place():
    shape, spacing = (20, 64, 48), (2.5, 0.8, 0.8)
    mask = np.zeros(shape, bool)
    mask[6:15, 20:44, 10:30] = True
    grid = network_grid(shape, spacing, 2.0)
    assert grid.shape_zyx == (25, 26, 19)
    back = to_scan_grid(to_network_grid(mask.astype(np.float32), grid, mode="area"), grid) >= 0.5
    assert back.shape == shape
    assert dice(back, mask) > 0.9
    assert np.allclose(np.argwhere(back).mean(0), np.argwhere(mask).mean(0), atol=0.6)


# --- shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(13, 7), (16, 16), (5, 31)])
def test_unet_keeps_any_image_size(size):
    net = UNet2D(UNetConfig(1, 3, base=4, levels=2))
    assert net(torch.rand(2, 1, *size)).shape == (2, 3, *size)


def test_mip_unet_and_slice_unet_shapes():
    model = MipUNet(TINY)
    out = model(torch.rand(2, 5, 12, 9))
    assert out.logits_zyx.shape == (2, 5, 12, 9)
    assert out.view_logits.shape == (2, 6, 5, detector_size(12, 9))
    assert model(torch.rand(1, 5, 12, 9), default_angles(6)[:2]).view_logits.shape[1] == 2
    prob = SliceUNet(SliceUNetConfig(base=4, levels=2, slices_per_batch=3)).probability(
        torch.rand(1, 7, 12, 9)
    )
    assert prob.shape == (1, 7, 12, 9) and float(prob.min()) >= 0 and float(prob.max()) <= 1
    with pytest.raises(ValueError, match=r"\(B, D, H, W\)"):
        model(torch.rand(5, 12, 9))


def test_segment_volume_returns_labels_on_the_scan_grid():
    hu, _ = synthetic_ct((10, 30, 26))
    result = segment_volume(MipUNet(TINY), hu, (2.0, 1.1, 1.3))
    assert result.mask_zyx.shape == hu.shape == result.probability_zyx.shape
    assert result.grid.shape_zyx == (7, 11, 11)


# --- checkpoints ----------------------------------------------------------------------


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    model = MipUNet(TINY)
    with torch.no_grad():
        model.tune.weight.add_(0.3)
    path = save_auto_model(model, tmp_path / "m.pt", {"target": "bone", "note": "x"})
    loaded, card = load_auto_model(path, kind="mip-unet")
    assert card["note"] == "x" and loaded.config == TINY
    x = torch.rand(1, 4, 10, 11)
    assert torch.equal(model.probability(x), loaded.probability(x))
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left


def test_checkpoint_refusals_name_the_problem(tmp_path):
    path = save_auto_model(SliceUNet(SliceUNetConfig(base=4, levels=2)), tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="slice-unet model, not a mip-unet"):
        load_auto_model(path, kind="mip-unet")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_auto_model(junk)
    payload = torch.load(path, weights_only=True)
    payload["config"]["colour"] = 3
    torch.save(payload, tmp_path / "bad_config.pt")
    with pytest.raises(CheckpointError, match="unknown config keys"):
        load_auto_model(tmp_path / "bad_config.pt")
    payload = torch.load(path, weights_only=True)
    key = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][key] = payload["state_dict"][key] * float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_auto_model(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_auto_model(tmp_path / "missing.pt")


# --- data and training ----------------------------------------------------------------


def test_split_is_by_patient_and_skips_the_same_patients_crop():
    train, held = volumes("train"), volumes("heldout")
    assert {v.patient for v in train}.isdisjoint({v.patient for v in held})
    assert [v.name for v in held] == ["ct_dicom20"]
    assert not any(v.image.startswith("totalseg_ct/") for v in VOLUMES)
    assert all(v.licence for v in VOLUMES)


@pytest.mark.parametrize("kind", ["mip-unet", "slice-unet"])
def test_tiny_training_run_lowers_the_loss_and_raises_dice(tmp_path, kind):
    vols = [grid_volume(*synthetic_ct((12, 32, 32), seed=s)) for s in range(2)]
    torch.manual_seed(1)
    if kind == "mip-unet":
        model = MipUNet(TINY)
    else:
        model = SliceUNet(SliceUNetConfig(base=8, levels=2, spacing_mm=3.0))
    held = grid_volume(*synthetic_ct((12, 32, 32), seed=7))

    def held_dice():
        return dice(segment_volume(model, held.hu_zyx, held.spacing_zyx_mm).mask_zyx, held.bone_zyx)

    before = held_dice()
    lr = 1e-2 if kind == "mip-unet" else 3e-3
    settings = TrainSettings(steps=80, lr=lr, checkpoint_every=20, frozen_fraction=0.25, seed=0)
    records = train_model(
        model, CropSampler(vols, (12, 32, 32)), settings, tmp_path / "m.pt", {"k": 1}
    )
    assert records[-1]["loss"] < records[0]["loss"]
    after = held_dice()
    assert after > before + 0.1 and after > 0.5, (before, after)
    assert [r["path"] for r in records] == (["A"] * 3 + ["B"] if kind == "mip-unet" else ["A"] * 4)
    loaded, card = load_auto_model(tmp_path / "m.pt", kind=kind)
    assert card["steps_done"] == 80 and card["k"] == 1
    assert len((tmp_path / "m.log.jsonl").read_text().splitlines()) == 4


def test_path_b_trains_only_f_and_t_and_runs_u_without_gradient():
    from napari_medsam.training.mipunet.trainer import _mip_step, _trainable

    model = MipUNet(TINY)
    opt = torch.optim.SGD(_trainable(model, "B"), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image, target = CropSampler([grid_volume(*synthetic_ct((12, 32, 32)))], (8, 24, 24)).crop()
    loss, _ = _mip_step(model, image, target, "B", torch.Generator().manual_seed(0))
    loss.backward()
    opt.step()
    changed = {
        k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])
    }
    assert changed == {"filtration", "tune"}
    assert all(p.grad is None for p in model.unet.parameters())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, _ in model.named_parameters() if n.split(".")[0] in ("filtration", "tune")
    }


def test_time_budget_keeps_path_b_its_share(tmp_path, monkeypatch):
    import napari_medsam.training.mipunet.trainer as trainer

    clock = iter(range(10**6))  # every look at the clock is one second later
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: float(next(clock)))
    model = MipUNet(TINY)
    tune_before = model.tune.weight.clone()
    vol = grid_volume(*synthetic_ct((8, 20, 20)))
    settings = TrainSettings(
        steps=1000, checkpoint_every=1000, frozen_fraction=0.25, max_minutes=1.0
    )
    train_model(model, CropSampler([vol], (6, 16, 16)), settings, tmp_path / "m.pt")
    _, card = load_auto_model(tmp_path / "m.pt")
    assert card["stopped"] == "max_minutes" and 50 <= card["steps_done"] <= 62
    assert not torch.equal(model.tune.weight, tune_before)  # path B ran: T moved


# --- command line ---------------------------------------------------------------------


@pytest.fixture
def scan_and_checkpoint(tmp_path):
    hu, _ = synthetic_ct((10, 36, 30))
    scan = write_nifti(tmp_path / "scan.nii.gz", hu, (2.0, 1.5, 1.5))
    ckpt = save_auto_model(MipUNet(TINY), tmp_path / "mip.pt", {"target": "bone"})
    return scan, ckpt


def test_cli_auto_writes_labels_on_the_scans_grid_with_names(tmp_path, scan_and_checkpoint, capsys):
    scan, ckpt = scan_and_checkpoint
    before = scan.read_bytes()
    out = tmp_path / "bone.nii.gz"
    assert main(["auto", str(scan), "--engine", "mip-unet", "--checkpoint", str(ckpt), "--out", str(out),
                 "--threads", "1"]) == 0  # fmt: skip
    src, lab = nib.load(str(scan)), nib.load(str(out))
    assert lab.shape == src.shape and np.allclose(lab.affine, src.affine)
    assert set(np.unique(np.asarray(lab.dataobj))) <= {0, 1}
    names = json.loads((tmp_path / "bone.labels.json").read_text())
    assert "bone" in json.dumps(names)
    assert scan.read_bytes() == before
    assert "voxels of bone" in capsys.readouterr().out


def _fails(argv, capsys, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err


def test_cli_auto_bad_inputs_lose_nothing(tmp_path, scan_and_checkpoint, capsys):
    scan, ckpt = scan_and_checkpoint
    before = scan.read_bytes()
    base = ["auto", str(scan), "--engine", "mip-unet", "--checkpoint", str(ckpt)]
    _fails([*base, "--out", str(scan)], capsys, "is also an input of this run")
    assert scan.read_bytes() == before
    _fails([*base, "--out", str(tmp_path / "nofolder" / "x.nii.gz")], capsys, "no such folder")
    _fails([*base, "--out", str(tmp_path / "x.png")], capsys, "labels are saved as")
    slice_ckpt = save_auto_model(SliceUNet(SliceUNetConfig(base=4, levels=2)), tmp_path / "s.pt")
    wrong = ["auto", str(scan), "--engine", "mip-unet", "--checkpoint", str(slice_ckpt)]
    _fails([*wrong, "--out", str(tmp_path / "a.nii.gz")], capsys, "not a mip-unet model")
    mri = write_nifti(
        tmp_path / "mri.nii.gz",
        np.random.default_rng(0).integers(0, 255, (6, 20, 20)).astype(np.uint8),
    )
    bad = ["auto", str(mri), "--engine", "mip-unet", "--checkpoint", str(ckpt)]
    _fails([*bad, "--out", str(tmp_path / "b.nii.gz")], capsys, "expects CT in Hounsfield units")
    _fails(
        [*base, "--out", str(tmp_path / "c.nii.gz"), "--threshold", "1.5"], capsys, "--threshold"
    )
    existing = tmp_path / "keep.nii.gz"
    existing.write_bytes(b"user file")
    _fails([*bad, "--out", str(existing)], capsys, "Hounsfield")
    assert existing.read_bytes() == b"user file"
    assert not (tmp_path / "a.nii.gz").exists() and not (tmp_path / "b.nii.gz").exists()


def test_cli_train_auto_end_to_end_on_a_synthetic_data_root(tmp_path, capsys):
    root = fake_data_root(tmp_path / "data")
    out = tmp_path / "run" / "mip.pt"
    out.parent.mkdir()
    argv = ["train-auto", "--task", "mip-unet", "--data-root", str(root), "--out", str(out),
            "--steps", "4", "--checkpoint-every", "2", "--base", "4", "--levels", "2", "--views", "4",
            "--spacing", "4", "--crop", "6", "16", "16", "--threads", "1"]  # fmt: skip
    assert main(argv) == 0
    figures = json.loads(out.with_suffix(".eval.json").read_text())
    assert figures["volumes"][0]["name"] == "ct_dicom20" and 0.0 <= figures["mean_dice"] <= 1.0
    card = out.with_suffix(".md").read_text()
    assert "Apache-2.0" in card and "ct_dicom20" in card and "automatic" in card
    _, stored = load_auto_model(out, kind="mip-unet")
    assert stored["heldout"]["threshold_hu"] in range(50, 501, 25)
    capsys.readouterr()
    _fails(["train-auto", "--task", "slice-unet", "--data-root", str(root), "--out", str(out.with_name("s.pt")),
            "--views", "4"], capsys, "mip-unet options")  # fmt: skip
    _fails(["train-auto", "--task", "mip-unet", "--data-root", str(tmp_path / "none"), "--out", str(out)],
           capsys, "data root not found")  # fmt: skip


@pytest.mark.parametrize("engine", ["mip-unet", "slice-unet"])
def test_bundled_weights_load_and_beat_their_threshold_baseline(tmp_path, engine, capsys):
    from importlib import resources

    from napari_medsam._cli.auto import BUNDLED

    path = resources.files("napari_medsam") / "resources" / BUNDLED[engine]
    model, card = load_auto_model(str(path), kind=engine)
    held = card["heldout"]
    assert held["mean_dice"] > held["mean_best_threshold_dice"] > 0
    assert [r["name"] for r in card["data"]["heldout"]] == ["ct_dicom20"]
    assert all(r["licence"] for r in card["data"]["train"])
    hu, _ = synthetic_ct((8, 30, 30))
    scan = write_nifti(tmp_path / "scan.nii.gz", hu)
    assert main(["auto", str(scan), "--engine", engine, "--out", str(tmp_path / "o.nii.gz")]) == 0
    assert nib.load(str(tmp_path / "o.nii.gz")).shape == nib.load(str(scan)).shape
