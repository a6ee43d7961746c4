"""The standing bad-input suite, command line part (issue 12).

Every case runs ``napari-medsam`` in-process on small files and asserts what the
issue asks of each: one clear line (no traceback), a non-zero exit code (or exit
0 and a warning where the input is usable), and that no file was changed that
should not be (every input's digest is compared; no output is left behind).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from bad_inputs import (
    ORGAN_BOX,
    Files,
    ct_volume,
    pickled_code_checkpoint,
    save_state,
    tiny_sam_state,
    write_nifti,
)
from fakes import FakeEngine

import napari_medsam.model.engine as engine_module
from napari_medsam import cli
from napari_medsam._cli import bench as bench_cli
from napari_medsam._cli import _common


@dataclass
class Run:
    code: int
    out: str
    err: str
    loads: list = field(default_factory=list)
    changed: set = field(default_factory=set)  # inputs whose bytes changed
    created: set = field(default_factory=set)  # files the run left behind

    @property
    def error_lines(self) -> list[str]:
        """stderr without progress lines ("[eval] 3/4 cases ...")."""
        return [ln for ln in self.err.splitlines() if ln.strip() and not ln.startswith("[")]


@pytest.fixture
def files(tmp_path):
    return Files(tmp_path)


#: MEDSAM_BAD_INPUT_TABLE=path appends one markdown row per run (case, what the user sees,
#: exit code, files changed) to ``path``: benchmarks/bad_input_table.py prints them
TABLE = os.environ.get("MEDSAM_BAD_INPUT_TABLE")


def _table_row(case: str, result: Run, root) -> str:
    seen = result.error_lines[-1] if result.error_lines else "(nothing)"
    seen = seen.replace(str(root) + os.sep, "").replace("|", "\\|")
    untouched = "yes" if not result.changed else "NO: " + ", ".join(sorted(result.changed))
    if result.created:
        untouched += f" (wrote {', '.join(sorted(result.created))})"
    return f"| `{case}` | {seen} | {result.code} | {untouched} |\n"


@pytest.fixture
def run(monkeypatch, capsys, files, request):
    """``run(argv, fake_engine=True)``: main() with the engine loaders counted (and faked)."""

    def _run(argv, fake_engine=True):
        loads = []
        if fake_engine:

            def fake(*args, **kwargs):
                loads.append(args)
                return FakeEngine()

            monkeypatch.setattr(engine_module, "load_engine", fake)
            monkeypatch.setattr(_common, "load_engine", fake)
            monkeypatch.setattr(bench_cli, "_load_engine", fake)
        before = files.digests()
        code = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        result = Run(code, captured.out, captured.err, loads)
        after = files.digests()
        result.changed = {k for k, v in after.items() if before.get(k, v) != v}
        result.created = set(after) - set(before)
        if TABLE:
            with open(TABLE, "a", encoding="utf-8") as table:
                table.write(_table_row(request.node.name, result, files.root))
        return result

    return _run


def assert_refused(result: Run, *needles: str) -> None:
    """Exit 2, exactly one line naming the problem, no traceback, no input changed."""
    assert result.code == 2, (result.code, result.err)
    assert "Traceback" not in result.err
    errors = [ln for ln in result.error_lines if ": error: " in ln]
    assert len(errors) == 1 and result.error_lines[-1] == errors[0], result.err  # one, the last
    line = errors[0]
    assert line.startswith("napari-medsam "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert not result.changed, result.changed


# ---------------------------------------------------------------- segment: outputs (items 1, 11)


def test_segment_out_equal_to_the_scan_is_refused(run, files):
    result = run(["segment", files.scan, "--out", files.scan, "--box", ORGAN_BOX])
    assert_refused(result, "also an input")
    assert result.loads == []  # refused before any model is loaded


def test_segment_out_hard_link_to_the_scan_is_refused(run, files):
    link = files.root / "link.nii.gz"
    os.link(files.scan, link)
    assert_refused(run(["segment", files.scan, "--out", link, "--box", ORGAN_BOX]), "also an input")


def test_segment_out_through_another_path_to_the_scan_is_refused(run, files):
    sub = files.root / "sub"
    sub.mkdir()
    other = sub / ".." / files.scan.name
    assert_refused(run(["segment", files.scan, "--out", other, "--box", ORGAN_BOX]), "input")


def test_segment_out_equal_to_negatives_from_is_refused(run, files):
    argv = ["segment", files.scan, "--out", files.labels, "--box", ORGAN_BOX]
    assert_refused(run([*argv, "--negatives-from", files.labels]), "also an input")


def test_segment_out_a_directory_is_refused(run, files):
    folder = files.root / "out.nii.gz"
    folder.mkdir()
    assert_refused(run(["segment", files.scan, "--out", folder, "--box", ORGAN_BOX]), "directory")


def test_segment_out_wrong_suffix_is_refused_before_propagation(run, files):
    argv = ["segment", files.scan, "--out", files.root / "o.png", "--box", ORGAN_BOX, "--propagate"]
    result = run(argv)
    assert_refused(result, "labels are saved as .nii, .nii.gz")
    assert result.loads == []


def test_segment_out_in_a_read_only_folder_is_refused_before_propagation(run, files, monkeypatch):
    ro = files.root / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(ro) else real(p, m))
    argv = ["segment", files.scan, "--out", ro / "o.nii.gz", "--box", ORGAN_BOX, "--propagate"]
    result = run(argv)
    assert_refused(result, "not writable")
    assert result.loads == [] and not list(ro.iterdir())


def test_segment_out_under_a_file_is_refused(run, files):
    out = files.scan / "o.nii.gz"
    assert_refused(run(["segment", files.scan, "--out", out, "--box", ORGAN_BOX]), "no such folder")


def test_segment_write_failure_is_one_line_and_leaves_no_file(run, files, monkeypatch):
    import nibabel as nib

    def full_disk(img, path):
        with open(path, "wb") as f:
            f.write(b"\x00" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = files.root / "out.nii.gz"
    write_nifti(out, np.zeros((4, 4, 4), np.uint8))  # an older result, to be kept whole
    kept = out.read_bytes()
    monkeypatch.setattr(nib, "save", full_disk)
    result = run(["segment", files.scan, "--out", out, "--box", ORGAN_BOX])
    assert_refused(result, "No space left on device")
    assert out.read_bytes() == kept
    assert not [p for p in files.root.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- segment: prompts (item 12)


def test_segment_zero_size_box_is_refused(run, files):
    result = run(["segment", files.scan, "--out", files.root / "o.nii.gz", "--box", "10,10,10,20,2"])
    assert_refused(result, "zero size")
    assert not (files.root / "o.nii.gz").exists()


def test_segment_negative_box_gets_the_real_reason_not_argparse(run, files):
    result = run(["segment", files.scan, "--out", files.root / "o.nii.gz", "--box", "-10,5,20,30,2"])
    assert_refused(result, "outside the volume")


def test_segment_negative_point_gets_the_real_reason(run, files):
    result = run(["segment", files.scan, "--out", files.root / "o.nii.gz", "--point", "-1,5,2"])
    assert_refused(result, "outside the volume")


def test_segment_blank_slice_is_refused(run, files):
    data = ct_volume()
    data[..., 2] = -1000  # air only
    scan = write_nifti(files.root / "blank.nii.gz", data)
    result = run(["segment", scan, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX])
    assert_refused(result, "blank")
    assert not (files.root / "o.nii.gz").exists()


def test_segment_all_nan_slice_is_refused(run, files):
    data = ct_volume().astype(np.float32)
    data[..., 2] = np.nan
    scan = write_nifti(files.root / "nan.nii.gz", data)
    result = run(["segment", scan, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX])
    assert_refused(result, "no finite intensity")


def test_segment_partly_nan_slice_is_usable_with_a_warning(run, files):
    data = ct_volume().astype(np.float32)
    data[:3, :3, 2] = np.nan
    scan = write_nifti(files.root / "somenan.nii.gz", data)
    result = run(["segment", scan, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX])
    assert result.code == 0 and "Traceback" not in result.err
    warnings = [line for line in result.error_lines if line.startswith("warning")]
    assert len(warnings) == 1 and "9 voxels are NaN or infinite" in warnings[0]
    assert (files.root / "o.nii.gz").exists()


def test_segment_only_negative_clicks_is_refused(run, files):
    argv = ["segment", files.scan, "--out", files.root / "o.nii.gz", "--neg-point", "5,5,2"]
    assert_refused(run(argv), "--box, --point")


def test_segment_label_zero_is_refused(run, files):
    argv = ["segment", files.scan, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX]
    assert_refused(run([*argv, "--label", "0"]), "--label must be")


def test_segment_mirrored_negatives_are_refused(run, files):
    argv = ["segment", files.scan, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX]
    assert_refused(run([*argv, "--negatives-from", files.mirrored]), "another affine")


# ---------------------------------------------------------------- the scan itself (reader)


def test_scan_is_a_directory_named_like_nifti(run, files):
    folder = files.root / "x.nii.gz"
    folder.mkdir()
    result = run(["segment", folder, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX])
    assert_refused(result, "is a directory")
    assert "no such file" not in result.err


def test_scan_missing(run, files):
    result = run(["segment", files.root / "nope.nii.gz", "--out", files.root / "o.nii.gz",
                  "--box", ORGAN_BOX])  # fmt: skip
    assert_refused(result, "no such file")


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("garbage", "not a readable NIfTI"),
        ("truncated", "truncated or corrupt"),
        ("2d", "3D"),
        ("4d", "volume"),
        ("complex", "complex"),
    ],
)
def test_unusable_scans_are_one_line(run, files, kind, needle):
    path = files.root / f"{kind}.nii.gz"
    if kind == "garbage":
        path.write_bytes(os.urandom(2000))
    elif kind == "truncated":
        write_nifti(path.with_suffix(""), ct_volume())
        path = path.with_suffix("")  # .nii: cut inside the voxel data
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "2d":
        write_nifti(path, ct_volume()[..., 0])
    elif kind == "4d":
        write_nifti(path, np.stack([ct_volume()] * 2, axis=-1))
    else:
        write_nifti(path, ct_volume().astype(np.complex64))
    result = run(["segment", path, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX])
    assert result.code == 2 and "Traceback" not in result.err and len(result.error_lines) == 1
    assert needle.lower() in result.err.lower(), result.err
    assert not (files.root / "o.nii.gz").exists()


# ---------------------------------------------------------------- eval (items 1, 7, 9)


def test_eval_json_onto_the_label_file_is_refused(run, files):
    result = run(["eval", files.scan, files.labels, "--json", files.labels])
    assert_refused(result, "also an input")
    assert result.loads == []


def test_eval_json_onto_the_scan_is_refused(run, files):
    assert_refused(run(["eval", files.scan, files.labels, "--json", files.scan]), "also an input")


def test_eval_plot_onto_the_json_is_refused(run, files):
    out = files.root / "r.json"
    argv = ["eval", files.scan, files.labels, "--json", out, "--plot", out]
    assert_refused(run(argv), "--plot")


def test_eval_json_into_a_read_only_folder_is_refused_before_eval(run, files, monkeypatch):
    ro = files.root / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(ro) else real(p, m))
    result = run(["eval", files.scan, files.labels, "--json", ro / "r.json"])
    assert_refused(result, "not writable")
    assert result.loads == []


def test_eval_json_write_failure_is_one_line(run, files, monkeypatch):
    import napari_medsam.io.atomic as atomic

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(files.root / "r.json"))

    monkeypatch.setattr(atomic, "open", denied, raising=False)
    result = run(["eval", files.scan, files.labels, "--json", files.root / "r.json",
                  "--max-clicks", "1", "--min-area", "5"])  # fmt: skip
    assert_refused(result, "Permission denied")
    assert not (files.root / "r.json").exists()


def test_eval_json_a_directory_is_refused(run, files):
    folder = files.root / "r.json"
    folder.mkdir()
    assert_refused(run(["eval", files.scan, files.labels, "--json", folder]), "directory")


def test_eval_mirrored_labels_are_refused(run, files):
    """Item 7: same shape, mirrored affine: a Dice on it would be meaningless."""
    result = run(["eval", files.scan, files.mirrored])
    assert_refused(result, "affine differs")
    assert result.loads == []


def test_eval_labels_of_another_shape_are_refused(run, files):
    other = write_nifti(files.root / "small.nii.gz", np.zeros((10, 10, 6), np.uint8))
    assert_refused(run(["eval", files.scan, other]), "same grid")


def test_eval_3d_protocol_checks_outputs_too(run, files):
    argv = ["eval", files.scan, files.labels, "--protocol", "3d", "--json", files.labels]
    assert_refused(run(argv), "also an input")


# ---------------------------------------------------------------- checkpoints (items 9, 10)


@pytest.fixture
def tiny_ckpt(files):
    return save_state(files.root / "tiny.pt", tiny_sam_state())


def test_nan_weights_are_refused_by_segment(run, files, tiny_ckpt):
    state = tiny_sam_state()
    state["mask_decoder.iou_prediction_head.layers.0.weight"][0, 0] = float("nan")
    bad = save_state(files.root / "nan.pt", state)
    out = files.root / "o.nii.gz"
    result = run(["segment", files.scan, "--out", out, "--box", ORGAN_BOX, "--checkpoint", bad,
                  "--device", "cpu"], fake_engine=False)  # fmt: skip
    assert_refused(result, "NaN")
    assert not out.exists()


def test_nan_weights_are_refused_by_model_info(run, files):
    state = tiny_sam_state()
    state["image_encoder.pos_embed"].fill_(float("inf"))
    bad = save_state(files.root / "inf.pt", state)
    assert_refused(run(["model-info", bad], fake_engine=False), "NaN or infinite")


def test_weights_with_infinite_logits_fail_the_forward_pass(run, files):
    state = tiny_sam_state()
    state["mask_decoder.output_upscaling.0.weight"].mul_(1e38)  # finite, but overflows
    bad = save_state(files.root / "huge.pt", state)
    out = files.root / "o.nii.gz"
    result = run(["segment", files.scan, "--out", out, "--box", ORGAN_BOX, "--checkpoint", bad,
                  "--device", "cpu"], fake_engine=False)  # fmt: skip
    assert_refused(result, "non-finite results")
    assert not out.exists()


def test_model_info_refuses_missing_keys(run, files):
    state = tiny_sam_state()
    del state["mask_decoder.iou_token.weight"]
    bad = save_state(files.root / "missing.pt", state)
    assert_refused(run(["model-info", bad], fake_engine=False), "missing keys")


def test_model_info_refuses_wrong_shapes(run, files):
    state = tiny_sam_state()
    state["mask_decoder.iou_token.weight"] = torch.zeros(3, 3)
    bad = save_state(files.root / "shapes.pt", state)
    assert_refused(run(["model-info", bad], fake_engine=False), "shape mismatches")


@pytest.fixture
def medsa_bad_config(run, files):
    from napari_medsam.model.medsa.checkpoint import read_medsa

    good = files.root / "medsa.pt"
    assert run(["convert", "--backbone", "tiny_sam", "--out", good], fake_engine=False).code == 0
    payload = dict(read_medsa(good))
    payload["config"] = {**payload["config"], "depth": "8"}
    return save_state(files.root / "medsa-bad.pt", payload)


@pytest.mark.parametrize("command", ["model-info", "segment", "eval"])
def test_medsa_config_of_the_wrong_type_is_one_line(run, files, medsa_bad_config, command):
    argv = {
        "model-info": ["model-info", medsa_bad_config],
        "segment": ["segment", files.scan, "--out", files.root / "o.nii.gz", "--box", ORGAN_BOX,
                    "--checkpoint", medsa_bad_config, "--device", "cpu"],
        "eval": ["eval", files.scan, files.labels, "--checkpoint", medsa_bad_config,
                 "--device", "cpu"],
    }[command]  # fmt: skip
    assert_refused(run(argv, fake_engine=False), "config value depth must be an integer")


def test_pickled_code_is_refused(run, files):
    bad = pickled_code_checkpoint(files.root / "evil.pt")
    assert_refused(run(["model-info", bad], fake_engine=False), "pickled code")


def test_truncated_checkpoint_is_refused(run, files, tiny_ckpt):
    cut = files.root / "cut.pt"
    cut.write_bytes(tiny_ckpt.read_bytes()[:5000])
    assert_refused(run(["model-info", cut], fake_engine=False), "not a readable")


def test_checkpoint_directory_is_refused(run, files):
    folder = files.root / "ckpt.pt"
    folder.mkdir()
    assert_refused(run(["model-info", folder], fake_engine=False), "is a directory")


# ---------------------------------------------------------------- convert / finetune / bench (4, 9)


def test_convert_out_onto_a_directory_is_refused(run, files):
    folder = files.root / "m.pt"
    folder.mkdir()
    result = run(["convert", "--backbone", "tiny_sam", "--out", folder], fake_engine=False)
    assert_refused(result, "is a directory")


def test_convert_out_into_a_read_only_folder_is_refused(run, files, monkeypatch):
    ro = files.root / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(ro) else real(p, m))
    result = run(["convert", "--backbone", "tiny_sam", "--out", ro / "m.pt"], fake_engine=False)
    assert_refused(result, "not writable")


def test_convert_out_onto_its_backbone_checkpoint_is_refused(run, files, tiny_ckpt):
    argv = ["convert", "--backbone", "tiny_sam", "--backbone-checkpoint", tiny_ckpt,
            "--out", tiny_ckpt]  # fmt: skip
    assert_refused(run(argv, fake_engine=False), "also an input")


def test_convert_full_disk_keeps_the_old_checkpoint(run, files, monkeypatch):
    """Item 4: a full disk during `convert` must not truncate an existing good checkpoint."""
    good = files.root / "m.pt"
    assert run(["convert", "--backbone", "tiny_sam", "--out", good], fake_engine=False).code == 0
    kept = good.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(len(kept) // 3)  # a part of it reached the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    result = run(["convert", "--backbone", "tiny_sam", "--out", good], fake_engine=False)
    assert_refused(result, "No space left on device")
    assert good.read_bytes() == kept
    assert not [p for p in files.root.iterdir() if ".tmp-" in p.name]


def test_finetune_out_onto_training_data_is_refused(run, files):
    argv = ["finetune", "--data", f"{files.scan}:{files.labels}", "--out", files.labels,
            "--backbone", "tiny_sam"]  # fmt: skip
    assert_refused(run(argv, fake_engine=False), "also an input")


def test_bench_json_a_directory_is_refused_before_loading(run, files):
    folder = files.root / "b.json"
    folder.mkdir()
    result = run(["bench", "--json", folder, "--no-gui"])
    assert_refused(result, "directory")
    assert result.loads == []

