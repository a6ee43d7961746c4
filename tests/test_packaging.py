"""Packaging: the top-level napari.yaml is the one manifest, in editable installs and wheels."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_import_pulls_in_neither_torch_nor_qt():
    code = (
        "import sys, napari_medsam, napari_medsam.cli; "
        "bad = [m for m in ('torch', 'qtpy', 'PyQt5', 'napari', 'segment_anything') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_installed_manifest_is_the_top_level_file():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-medsam")
    assert manifest is not None, "napari does not see the plugin"
    import importlib.resources

    installed = importlib.resources.files("napari_medsam").joinpath("napari.yaml").read_bytes()
    assert installed == (REPO / "napari.yaml").read_bytes()
    top = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    assert manifest.model_dump(exclude={"package_metadata"}) == top.model_dump(
        exclude={"package_metadata"}
    )


def test_manifest_commands_resolve_to_importable_callables():
    npe2 = pytest.importorskip("npe2")
    top = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    for command in top.contributions.commands:
        module_name, _, attr = command.python_name.partition(":")
        module = __import__(module_name, fromlist=[attr])
        assert callable(getattr(module, attr)), command.id


def test_wheel_carries_the_top_level_manifest(tmp_path):
    pytest.importorskip("setuptools")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("napari_medsam-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packaged = zf.read("napari_medsam/napari.yaml")
        entry_points = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        eps = zf.read(entry_points).decode()
    assert packaged == (REPO / "napari.yaml").read_bytes()
    assert "napari-medsam = napari_medsam:napari.yaml" in eps
    assert "napari-medsam = napari_medsam.cli:main" in eps
