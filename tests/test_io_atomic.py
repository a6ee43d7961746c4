"""The one atomic-write helper and the output-path check (issue 12, item 4 and the Build list)."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_medsam.io.atomic import (
    OutputPathError,
    atomic_path,
    atomic_write,
    atomic_write_text,
    check_output_path,
)


def _full_disk_after(n_bytes):
    def write(f):
        f.write(b"x" * n_bytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, '{"old": true}\n')
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, _full_disk_after(10))
    assert target.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_path_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    target = tmp_path / "labels.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1


def test_save_medsa_is_atomic(tmp_path, monkeypatch):
    """Item 4: `save_medsa` wrote straight to the target; a full disk truncated a good file."""
    from napari_medsam.model.medsa.build import backbone_state_dict_from, build_medsa
    from napari_medsam.model.medsa.checkpoint import read_medsa, save_medsa
    from napari_medsam.model.medsa.config import MedSAConfig

    model = build_medsa("tiny_sam", backbone_state_dict_from("tiny_sam", None),
                        MedSAConfig(backbone="tiny_sam"))  # fmt: skip
    path = save_medsa(model, tmp_path / "m.pt", full=True)
    good = path.read_bytes()
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(len(good) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError):
        save_medsa(model, path, full=True)
    assert path.read_bytes() == good
    monkeypatch.setattr(torch, "save", real_save)
    read_medsa(path)  # still a readable checkpoint


def test_training_state_is_atomic(tmp_path, monkeypatch):
    from napari_medsam.model.medsa.build import backbone_state_dict_from, build_medsa
    from napari_medsam.model.medsa.config import MedSAConfig
    from napari_medsam.training.state import save_state

    model = build_medsa("tiny_sam", backbone_state_dict_from("tiny_sam", None),
                        MedSAConfig(backbone="tiny_sam"))  # fmt: skip
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad] or
                          [torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # fmt: skip
    path = tmp_path / "m.pt.state.pt"
    rng = np.random.default_rng(0)
    save_state(path, model, opt, 1, 0, rng, {}, {})
    good = path.read_bytes()
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: _full_disk_after(100)(f))
    with pytest.raises(OSError):
        save_state(path, model, opt, 2, 0, rng, {}, {})
    assert path.read_bytes() == good


def test_sidecars_and_snapshots_use_the_helper(tmp_path, monkeypatch):
    import napari_medsam.io.atomic as atomic
    from napari_medsam.session.labels import LabelRegistry
    from napari_medsam.session.store import write_snapshot

    written = []
    real = atomic.atomic_write

    def spy(path, write):
        written.append(os.path.basename(path))
        return real(path, write)

    monkeypatch.setattr(atomic, "atomic_write", spy)
    registry = LabelRegistry()
    registry.add("liver")
    registry.save_sidecars(tmp_path / "x.nii.gz")
    import napari_medsam.session.store as store

    monkeypatch.setattr(store, "atomic_write", spy)
    write_snapshot(tmp_path, 3, np.zeros((2, 2, 2), np.uint8))
    assert {"x.labels.json", "x.label.txt", "x.ctbl", "labels-00000003.npz"} <= set(written)


def test_output_may_not_be_an_input(tmp_path):
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"ct")
    with pytest.raises(OutputPathError, match="also an input"):
        check_output_path(scan, "--out", [scan])
    link = tmp_path / "same.nii.gz"
    os.link(scan, link)
    with pytest.raises(OutputPathError, match="also an input"):
        check_output_path(link, "--out", [scan])
    series = tmp_path / "dicom"
    series.mkdir()
    with pytest.raises(OutputPathError, match="also an input"):  # a DICOM folder over its input
        check_output_path(series, "--out", [series], allow_dir=True)
    assert check_output_path(tmp_path / "new.nii.gz", "--out", [scan, None]).name == "new.nii.gz"


def test_output_path_problems_are_named(tmp_path, monkeypatch):
    (tmp_path / "d.json").mkdir()
    with pytest.raises(OutputPathError, match="is a directory"):
        check_output_path(tmp_path / "d.json", "--json")
    with pytest.raises(OutputPathError, match="must end with .json"):
        check_output_path(tmp_path / "r.txt", "--json", suffixes=(".json",))
    (tmp_path / "f").write_text("a file")
    with pytest.raises(OutputPathError, match="not a folder"):
        check_output_path(tmp_path / "f" / "r.json", "--json")
    monkeypatch.setattr(os, "access", lambda p, m: False)
    with pytest.raises(OutputPathError, match="not writable"):
        check_output_path(tmp_path / "r.json", "--json")


def test_the_napari_writer_never_writes_labels_over_their_scan(tmp_path):
    """File > Save of the labels layer onto the scan's own file name is refused."""
    import nibabel as nib

    from napari_medsam.io.napari_writer import write_labels
    from napari_medsam.io.nifti import NiftiError, load_nifti

    scan = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(64, dtype=np.int16).reshape(4, 4, 4), np.eye(4)), scan)
    before = scan.read_bytes()
    volume = load_nifti(scan)
    meta = {"metadata": volume.layer_metadata(), "name": "ct labels"}
    with pytest.raises(NiftiError, match="refusing to overwrite"):
        write_labels(str(scan), np.ones(volume.data_zyx.shape, np.uint8), meta)
    assert scan.read_bytes() == before
    assert write_labels(str(tmp_path / "ok.nii.gz"), np.ones(volume.data_zyx.shape, np.uint8), meta)


#: Writes that overwrite a file in place (a full disk or a kill leaves it torn). Appends
#: (``open(p, "a")``, the session journal's ``O_APPEND``) are allowed: they only add.
_IN_PLACE = re.compile(r"\.write_(text|bytes)\(|\bjson\.dump\(|\bopen\([^)]*[\"'][wx]b?[\"']")


def _in_place_writes(source: str) -> list[str]:
    return [line.strip() for line in source.splitlines() if _IN_PLACE.search(line)]


def test_the_in_place_write_finder_finds_one():
    assert _in_place_writes('p.write_text("x")\nwith open(p, "wb") as f:\nopen(p, "a")\n') == [
        'p.write_text("x")',
        'with open(p, "wb") as f:',
    ]


def test_every_file_the_project_writes_goes_through_the_helper():
    """The package and the benchmark scripts write files only through io/atomic.py."""
    root = Path(__file__).resolve().parents[1]
    offenders = {
        str(path.relative_to(root)): hits
        for folder in ("napari_medsam", "benchmarks")
        for path in sorted((root / folder).rglob("*.py"))
        if path.name != "atomic.py"
        if (hits := _in_place_writes(path.read_text(encoding="utf-8")))
    }
    assert not offenders, offenders
